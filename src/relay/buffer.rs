//! The copy buffer of one direction, allocated only when the connection carries bulk data.
//!
//! Reads go to a small buffer on the stack until one fills it; only then is the full-size
//! buffer allocated. An idle connection, or one that carries small messages, holds no heap
//! buffer. The allocation may fail (a 32-bit router's address space, `prlimit --as`): then
//! the direction goes on with the small buffer, slower but alive, and one line says so per
//! burst, instead of the whole process aborting.

use crate::log::{self, Burst};

/// Size of the first read buffer, on the stack.
pub const SMALL: usize = 128;

/// Failed allocations, logged once per burst for the whole process.
static NO_MEMORY: Burst = Burst::new();

/// One direction's buffer: small on the stack, or `size` bytes on the heap.
pub struct Buffer {
    small: [u8; SMALL],
    big: Vec<u8>,
    /// The full size, once it is worth allocating.
    size: usize,
}

impl Buffer {
    /// A buffer that grows to `size` bytes once a read fills the small one.
    pub fn new(size: usize) -> Buffer {
        Buffer {
            small: [0; SMALL],
            big: Vec::new(),
            size,
        }
    }

    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        if self.big.is_empty() {
            let len = SMALL.min(self.size);
            &mut self.small[..len]
        } else {
            &mut self.big[..]
        }
    }

    /// The first `n` bytes of the last read.
    pub fn filled(&self, n: usize) -> &[u8] {
        let data = if self.big.is_empty() {
            &self.small[..]
        } else {
            &self.big[..]
        };
        data.get(..n).unwrap_or_default()
    }

    /// After a read of `n` bytes: a read that filled the small buffer means bulk data, so
    /// the full buffer is allocated now (or never, if memory is short).
    pub fn grow_if_full(&mut self, n: usize) {
        if !self.big.is_empty() || n < SMALL.min(self.size) || self.size <= SMALL {
            return;
        }
        let mut big = Vec::new();
        if big.try_reserve_exact(self.size).is_err() {
            NO_MEMORY.problem(format_args!(
                "cannot allocate a {} byte copy buffer: relaying with {SMALL} bytes \
                 (lower --buffer-size or raise the memory limit)",
                self.size
            ));
            // Do not try again on every read of this connection.
            self.size = SMALL;
            return;
        }
        if let Some(ended) = NO_MEMORY.clear() {
            log::problem(format_args!(
                "copy buffers can be allocated again after {ended} ({} relayed with {SMALL} bytes)",
                ended.count
            ));
        }
        big.resize(self.size, 0);
        self.big = big;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_first_then_the_full_size() {
        let mut b = Buffer::new(4096);
        assert_eq!(b.space().len(), SMALL);
        b.grow_if_full(SMALL - 1);
        assert_eq!(b.space().len(), SMALL);
        b.grow_if_full(SMALL);
        assert_eq!(b.space().len(), 4096);
        b.space()[..3].copy_from_slice(b"abc");
        assert_eq!(b.filled(3), b"abc");
    }

    #[test]
    fn a_failed_allocation_keeps_the_small_buffer() {
        // More than any address space holds: the allocation fails, the buffer stays usable.
        let mut b = Buffer::new(isize::MAX as usize);
        b.grow_if_full(SMALL);
        assert_eq!(b.space().len(), SMALL);
        b.grow_if_full(SMALL);
        assert_eq!(b.space().len(), SMALL);
    }

    #[test]
    fn a_buffer_smaller_than_the_small_one_never_grows() {
        let mut b = Buffer::new(64);
        assert_eq!(b.space().len(), 64);
        b.grow_if_full(64);
        assert_eq!(b.space().len(), 64);
    }
}

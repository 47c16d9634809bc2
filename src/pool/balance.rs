//! The policy math, free of sockets and clocks: given the targets a connection may use, in
//! which order to try them. The pool decides which targets those are
//! (health, backups) and tries them in the order returned here.

use std::cmp::Ordering;
use std::net::IpAddr;

/// A target a policy may choose, with what the policies weigh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Its position in the pool (written order).
    pub index: usize,
    /// Its `,weight=N` (1..=1000).
    pub weight: u32,
    /// Connections open to it now (least-conn).
    pub active: usize,
    /// A hash of the target as written (source-hash), from [`key_of`].
    pub key: u64,
}

/// Smooth weighted round-robin, as nginx does it: every pick adds each candidate's weight to
/// its running score, takes the highest score, and takes the total weight off the winner.
/// Weights 3:1 give a,a,b,a (never three in a row when a smoother order exists), and over
/// any whole cycle each target gets exactly its share.
#[derive(Debug, Default)]
pub struct Smooth {
    /// Running score per pool index. i64 in a `Mutex` (not an atomic), so 32-bit safe.
    current: Vec<i64>,
}

impl Smooth {
    /// State for a pool of `len` targets.
    pub fn new(len: usize) -> Smooth {
        Smooth {
            current: vec![0; len],
        }
    }

    /// Picks one of `candidates`; returns its pool index. Targets that are not candidates
    /// this time (down, backups) keep their score and take no part.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for c in candidates {
            let Some(score) = self.current.get_mut(c.index) else {
                continue;
            };
            let weight = i64::from(c.weight.max(1));
            *score += weight;
            total += weight;
            // Strictly greater: ties go to the earlier target in written order.
            if best.is_none_or(|(_, s)| *score > s) {
                best = Some((c.index, *score));
            }
        }
        let (index, _) = best?;
        if let Some(score) = self.current.get_mut(index) {
            *score -= total;
        }
        Some(index)
    }
}

/// Round-robin order: `chosen` first, then the other candidates in written order, going on
/// from the chosen one and wrapping around (so failover spreads like the rotation does).
pub fn after_chosen(chosen: usize, candidates: &[Candidate]) -> Vec<usize> {
    let mut indices: Vec<usize> = candidates.iter().map(|c| c.index).collect();
    indices.sort_unstable();
    let split = indices.partition_point(|&i| i <= chosen);
    let rest = indices[split..].iter().chain(&indices[..split]);
    std::iter::once(chosen)
        .chain(rest.copied().filter(|&i| i != chosen))
        .collect()
}

/// Least-conn order: fewest open connections per unit of weight first. Equal loads are
/// taken in written order starting at `start % len`, so idle targets share new connections
/// instead of the first one taking them all.
pub fn least_conn_order(candidates: &[Candidate], start: usize) -> Vec<usize> {
    let len = candidates.len();
    if len == 0 {
        return Vec::new();
    }
    let mut rotated: Vec<Candidate> = candidates
        .iter()
        .cycle()
        .skip(start % len)
        .take(len)
        .copied()
        .collect();
    // Stable: the rotation decides among equals.
    rotated.sort_by(compare_load);
    rotated.iter().map(|c| c.index).collect()
}

/// `a.active / a.weight` against `b.active / b.weight`, without division or floats.
fn compare_load(a: &Candidate, b: &Candidate) -> Ordering {
    let left = a.active as u128 * u128::from(b.weight.max(1));
    let right = b.active as u128 * u128::from(a.weight.max(1));
    left.cmp(&right)
}

/// Source-hash order: weighted rendezvous hashing. Every (client, target) pair gets a score;
/// the highest score wins and the next ones are the failover order. When a target leaves,
/// only the clients it had move (each to its own second choice); everyone else stays put.
pub fn hash_order(client: IpAddr, candidates: &[Candidate]) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = candidates
        .iter()
        .map(|c| (score(client, c.key, c.weight), c.index))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// First order: written order (weights ignored).
pub fn first_order(candidates: &[Candidate]) -> Vec<usize> {
    let mut indices: Vec<usize> = candidates.iter().map(|c| c.index).collect();
    indices.sort_unstable();
    indices
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `seed`. Defined bit for bit, so the same client
/// goes to the same target on every run and every platform (std's hasher is randomised).
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// The hash of a target as written: its identity for source-hash, so reordering the target
/// list or adding one does not reshuffle the clients of the others.
pub fn key_of(label: &str) -> u64 {
    fnv1a(FNV_OFFSET, label.as_bytes())
}

/// Spreads FNV's weak low bits over the whole word (the splitmix64 finaliser).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of one (client, target) pair.
pub fn pair_hash(client: IpAddr, key: u64) -> u64 {
    let h = match client {
        IpAddr::V4(ip) => fnv1a(key, &ip.octets()),
        IpAddr::V6(ip) => fnv1a(key, &ip.octets()),
    };
    mix(h)
}

/// Weighted rendezvous score: `weight / -ln(u)` with `u` uniform in (0, 1) from the pair's
/// hash. A target of weight 3 wins three times as many clients as one of weight 1.
pub fn score(client: IpAddr, key: u64, weight: u32) -> f64 {
    let bits = pair_hash(client, key) >> 11; // 53 bits: exact in an f64
    let unit = (bits as f64 + 0.5) / (1u64 << 53) as f64; // never 0, never 1
    f64::from(weight.max(1)) / -unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn targets(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| Candidate {
                index,
                weight,
                active: 0,
                key: key_of(&format!("10.0.0.{index}:80")),
            })
            .collect()
    }

    fn picks(weights: &[u32], n: usize) -> Vec<usize> {
        let candidates = targets(weights);
        let mut smooth = Smooth::new(candidates.len());
        (0..n).map(|_| smooth.pick(&candidates).unwrap()).collect()
    }

    #[test]
    fn smooth_three_to_one_is_a_a_b_a() {
        assert_eq!(picks(&[3, 1], 8), [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn smooth_five_one_one_interleaves() {
        // nginx's documented example: a a b a c a a.
        assert_eq!(picks(&[5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_gives_exact_shares_per_cycle() {
        let order = picks(&[3, 1, 1], 500);
        let count = |t| order.iter().filter(|&&i| i == t).count();
        assert_eq!((count(0), count(1), count(2)), (300, 100, 100));
    }

    #[test]
    fn smooth_equal_weights_rotate() {
        assert_eq!(picks(&[1, 1, 1], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_skips_targets_that_are_not_candidates() {
        let all = targets(&[1, 1, 1]);
        let mut smooth = Smooth::new(3);
        let without_middle = [all[0], all[2]];
        let got: Vec<usize> = (0..4)
            .map(|_| smooth.pick(&without_middle).unwrap())
            .collect();
        assert_eq!(got, [0, 2, 0, 2]);
        assert_eq!(smooth.pick(&[]), None);
    }

    #[test]
    fn failover_order_goes_on_after_the_chosen_one() {
        let c = targets(&[1, 1, 1, 1]);
        assert_eq!(after_chosen(2, &c), [2, 3, 0, 1]);
        assert_eq!(after_chosen(0, &c), [0, 1, 2, 3]);
        assert_eq!(after_chosen(3, &c[1..]), [3, 1, 2]);
    }

    #[test]
    fn least_conn_prefers_fewest_per_weight() {
        let mut c = targets(&[1, 1, 1]);
        c[0].active = 2;
        c[1].active = 0;
        c[2].active = 1;
        assert_eq!(least_conn_order(&c, 0), [1, 2, 0]);
        // Weight 4 with 3 open (0.75 each) beats weight 1 with 1 open.
        let mut c = targets(&[4, 1]);
        c[0].active = 3;
        c[1].active = 1;
        assert_eq!(least_conn_order(&c, 1), [0, 1]);
    }

    #[test]
    fn least_conn_ties_rotate() {
        let c = targets(&[1, 1, 1]);
        assert_eq!(least_conn_order(&c, 0), [0, 1, 2]);
        assert_eq!(least_conn_order(&c, 1), [1, 2, 0]);
        assert_eq!(least_conn_order(&c, 5), [2, 0, 1]);
        assert!(least_conn_order(&[], 3).is_empty());
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // Published FNV-1a 64-bit test vectors: the hash is the same on every platform.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn pair_hash_is_fixed() {
        // Pinned: a change here would move every source-hash client after an upgrade.
        let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        // (Checked against an independent Python version of FNV-1a + splitmix64.)
        assert_eq!(
            pair_hash(client, key_of("10.0.0.5:80")),
            0x2915_0876_46d4_fc9f
        );
    }

    fn clients(n: u32) -> impl Iterator<Item = IpAddr> {
        (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7919)))
    }

    #[test]
    fn hash_is_stable_and_spreads_by_weight() {
        let c = targets(&[3, 1, 1]);
        let mut counts = [0usize; 3];
        for client in clients(20_000) {
            let first = hash_order(client, &c)[0];
            assert_eq!(hash_order(client, &c)[0], first);
            counts[first] += 1;
        }
        // 12,000 / 4,000 / 4,000 expected; within 5 %.
        assert!((11_400..=12_600).contains(&counts[0]), "{counts:?}");
        assert!((3_800..=4_200).contains(&counts[1]), "{counts:?}");
        assert!((3_800..=4_200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn hash_moves_only_the_clients_of_a_missing_target() {
        let all = targets(&[1, 1, 1, 1]);
        let without = [all[0], all[1], all[3]];
        let mut moved = 0;
        for client in clients(5_000) {
            let before = hash_order(client, &all);
            let after = hash_order(client, &without);
            if before[0] == 2 {
                // Its clients go to their second choice.
                assert_eq!(after[0], before[1]);
                moved += 1;
            } else {
                assert_eq!(after[0], before[0]);
            }
        }
        assert!((1_000..=1_500).contains(&moved), "{moved}");
    }

    #[test]
    fn hash_order_lists_every_candidate_once() {
        let c = targets(&[1, 2, 3]);
        let mut order = hash_order(IpAddr::V4(Ipv4Addr::LOCALHOST), &c);
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn first_is_written_order() {
        let c = targets(&[5, 1, 9]);
        assert_eq!(first_order(&[c[2], c[0], c[1]]), [0, 1, 2]);
    }
}

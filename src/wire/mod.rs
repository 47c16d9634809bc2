//! Wire formats tcpfwd speaks besides the relayed bytes: the HTTP CONNECT head and its
//! answers, the PROXY protocol header, and how a connection is closed after an answer.

pub mod answer;
pub mod connect_head;
pub mod proxy_header;

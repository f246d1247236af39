//! The examples of serversets, each a program of its own: run one with
//! `cargo run --release -p serversets-examples --example NAME` (`demo`,
//! `memcache_cluster`, `http_cluster`, `grpc_balance`, `soak`). This
//! library is empty; the package exists so that the examples' dependencies
//! stay out of the published crates.

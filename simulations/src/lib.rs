//! Benchmarks and scale experiments for shoal. Each binary in `src/bin/`
//! measures shoal against a baseline in the same run and prints ratios.

pub mod edge;
pub mod http_fetch;
pub mod proc_stats;

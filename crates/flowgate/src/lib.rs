//! flowgate: the pieces the `flowgate` binary wires together, as a library so that
//! tests and benchmarks use exactly what the binary runs.

pub mod api;
pub mod config;
pub mod convert;
pub mod generate;
pub mod logging;
pub mod pipeline;
pub mod simulate;
pub mod transform;

//! End-to-end tests: the real `flowgate` binary against real files and real peers.

mod azure;
mod cli;
mod golden;
mod parse_back;
mod run;
mod support;

//! flowgate sinks: encoders for SIEM formats, and the outputs that deliver them.

pub mod encode;

//! flowgate sources: where flow log bytes come from, and where their checkpoints live.

pub mod extract;

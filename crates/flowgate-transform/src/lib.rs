//! flowgate transform: flow log records into flat per-tuple events.
//!
//! [`Flattener::flatten_record`] turns one record's JSON into a [`flowgate_core::RecordContext`],
//! its [`flowgate_core::FlowGroup`]s and one [`flowgate_core::FlowEvent`] per tuple. Bad
//! input is reported as a [`Problem`] and skipped: a bad tuple never drops its neighbours,
//! a bad record never drops the rest of the batch.

pub mod enrich;
mod epoch;
pub mod filter;
mod flatten;
pub mod geoip;
pub mod inventory;
mod lookup_cache;
mod problem;
mod raw;
pub mod rdns;
mod resource_id;
mod tuple;
pub mod volume;
mod watched_file;

pub use enrich::{EnrichConfig, Enricher};
pub use filter::{Cidr, Filter, FilterConfig};
pub use flatten::{FlattenStats, Flattener};
pub use lookup_cache::{CacheCounts, LookupCache};
pub use problem::{Problem, ProblemKind, RecordErrorKind, TupleErrorKind};
pub use resource_id::ResourceIdParts;
pub use volume::{Aggregator, Dedup, VolumeConfig};

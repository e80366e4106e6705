//! Types shared by every flowgate stage.
//!
//! The crates `flowgate-source`, `flowgate-transform` and `flowgate-sink` depend on this
//! crate only, never on each other. What travels between them is defined here:
//! [`RecordBatch`] (source → transform), [`EventBatch`] (transform → sink) and the
//! acknowledgement ([`Finalizer`] → [`Ack`]) that travels back so checkpoints advance only
//! after delivery.

pub mod ack;
pub mod batch;
pub mod dead_letter;
pub mod enrichment;
pub mod event;
pub mod glob;
pub mod hash;
pub mod health;
pub mod metric_names;
pub mod reopen;
pub mod secret;
pub mod time;

pub use ack::{Ack, AckSender, BatchStatus, Finalizer};
pub use batch::{Delivery, EventBatch, Origin, RecordBatch, Summary};
pub use enrichment::{
    AddrClass, AddressFacts, AddressTable, Asset, Enrichment, Geo, RuleKind, Service,
};
pub use event::{
    Action, Direction, Encryption, FlowEvent, FlowGroup, FlowState, LogKind, Mac, Protocol,
    RecordContext,
};
pub use secret::Secret;

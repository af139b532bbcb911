//! The consumer core, shared by the active (REST) consumer and the reactive consumer: one
//! librdkafka consumer per instance, each owned by its own worker thread and driven by commands.
//!
//! * [`ConsumerManager`] creates, finds, expires and closes instances (bounded in number).
//! * [`ConsumerInstance`] is the async handle the edges call; it never touches librdkafka itself.
//! * `worker` owns the consumer: it polls at least every 200 ms whatever the app does (so the group
//!   never evicts a slow app), keeps a prefetch buffer bounded in bytes (pausing partitions when
//!   full), and answers long-poll fetches from it.
//! * Offsets: what was *returned to the app* is what an empty commit or auto-commit stores.
//! * [`lag`] measures committed offset, log end and time lag per partition.

mod buffer;
mod context;
mod instance;
pub mod lag;
mod manager;
mod operations;
mod types;
mod worker;

pub use context::{DoneOffsets, RebalanceEvent};
pub use instance::ConsumerInstance;
pub use manager::{ConsumerManager, InstanceHooks};
pub use types::{
    CommittedOffset, ConsumedRecord, FetchLimits, InstanceSettings, InstanceState, ProcessedOffset, SeekPosition,
    Subscription, TimestampKind, TopicPartition,
};

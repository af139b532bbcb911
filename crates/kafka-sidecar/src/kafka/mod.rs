//! Everything that talks to Kafka: the shared producer and its librdkafka plumbing, the embedded
//! dev broker. Consumers will live here too.

mod admission;
mod context;
mod dev_broker;
mod producer;
mod properties;
mod topics;

pub use admission::{ByteBudget, Permit};
pub use dev_broker::DevBroker;
pub use producer::{DrainReport, RECORD_OVERHEAD_BYTES, SharedProducer};

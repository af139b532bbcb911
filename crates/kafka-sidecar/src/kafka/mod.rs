//! Everything that talks to Kafka: the shared producer and its librdkafka plumbing, the embedded
//! dev broker, the librdkafka configuration of consumers (whose core is `crate::consumer`), and
//! `kafka.security`'s runtime parts: OAUTHBEARER tokens and the authentication/TLS failures that
//! readiness reports.

mod admission;
mod broker_status;
mod context;
mod dev_broker;
pub mod oauth;
mod producer;
mod properties;
mod topics;

pub use admission::{ByteBudget, Fairness, Permit, Refusal, RefusalReason, RetryBounds, SenderId, SenderShare};
pub use broker_status::BrokerStatus;
pub use dev_broker::DevBroker;
pub use producer::{DrainReport, RECORD_OVERHEAD_BYTES, SharedProducer};
pub use properties::{consumer_config, shared_consumer_properties};
pub use topics::{PartitionDescription, TopicDescription};

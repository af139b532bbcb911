//! Delivery reports routed back to the producer instance (session) that sent each record.
//!
//! Admission reserves a slot in the session's [`SessionRing`] for each record; the librdkafka
//! delivery callback fills it; `DeliveryStream` calls read from it. Memory is bounded three ways:
//! reports reserved or unread per session and across sessions (a session over its share is
//! refused new records rather than losing reports), and sessions (idle ones are evicted).

mod ring;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::Stream;

use crate::config::DeliveryConfig;
use crate::error::{ErrorCode, SidecarError};
use crate::record::DeliveryReport;
pub use ring::{ReportSlot, SessionRing};

/// Reports read from a ring per wake-up.
const READ_CHUNK: usize = 512;
/// A session with no stream keeps its sent reports (for a resume) this long.
const RESEND_GRACE: Duration = Duration::from_secs(10);

/// All sessions' rings.
pub struct DeliveryHub {
    sessions: Mutex<HashMap<String, Arc<SessionRing>>>,
    /// Reports reserved or unread across sessions.
    pending: Arc<AtomicUsize>,
    config: DeliveryConfig,
}

impl DeliveryHub {
    /// An empty hub.
    pub fn new(config: DeliveryConfig) -> Arc<Self> {
        Arc::new(Self { sessions: Mutex::new(HashMap::new()), pending: Arc::new(AtomicUsize::new(0)), config })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<SessionRing>>> {
        crate::sync::lock(&self.sessions)
    }

    /// The ring of `session_id`, created on first use.
    pub fn session(&self, session_id: &str) -> Arc<SessionRing> {
        let mut sessions = self.lock();
        if let Some(ring) = sessions.get(session_id) {
            ring.touch();
            return Arc::clone(ring);
        }
        if sessions.len() >= self.config.max_sessions {
            // Prefer a session with nothing in flight and nothing unread: forgetting it loses nothing.
            let idle = sessions
                .iter()
                .filter(|(_, ring)| !ring.has_subscribers())
                .max_by_key(|(_, ring)| (!ring.has_pending(), ring.idle_for()))
                .map(|(id, _)| id.clone());
            if let Some(id) = idle {
                tracing::warn!(session = %id, "evicting the least recently active delivery session");
                sessions.remove(&id);
            }
        }
        let ring = Arc::new(SessionRing::new(
            self.config.ring_capacity,
            Arc::clone(&self.pending),
            self.config.max_buffered_reports,
        ));
        sessions.insert(session_id.to_string(), Arc::clone(&ring));
        ring
    }

    /// Sessions currently kept.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Reports reserved or unread across all sessions.
    pub fn pending_reports(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Housekeeping: forgets sessions with no stream and no activity for the idle timeout, and the
    /// sent reports of sessions whose stream has been gone for a while.
    pub fn maintain(&self) {
        let timeout = Duration::from_millis(self.config.session_idle_timeout_ms);
        self.lock().retain(|_, ring| {
            if ring.has_subscribers() {
                return true;
            }
            let idle = ring.idle_for();
            if idle >= RESEND_GRACE {
                ring.release_sent();
            }
            idle < timeout
        });
    }

    /// Closes every ring: streams end after sending what is kept.
    pub fn close_all(&self) {
        for ring in self.lock().values() {
            ring.close();
        }
    }

    /// Reports of `session_id` after `after_seq`, then live ones, until the hub closes; each item
    /// is what was available at one look, at most [`READ_CHUNK`] reports.
    ///
    /// Sent reports stay within the ring's resend window, so a worker that reconnects may ask again
    /// from the last report it processed. Reports a request skips past (`after_seq`) are forgotten.
    /// Resuming (`after_seq > 0`) a session this instance never numbered that far fails with
    /// `UNKNOWN_SESSION`: the sidecar restarted or evicted it, and those reports are gone.
    pub fn stream(
        &self,
        session_id: &str,
        after_seq: u64,
    ) -> Result<impl Stream<Item = Vec<DeliveryReport>> + Send + 'static, SidecarError> {
        let known = crate::sync::lock(&self.sessions).get(session_id).cloned();
        let resumable = known.as_ref().is_some_and(|ring| after_seq < ring.next_seq());
        if after_seq > 0 && !resumable {
            return Err(SidecarError::new(
                ErrorCode::UnknownSession,
                format!(
                    "session {session_id:?} has no report {after_seq} on this sidecar instance \
                     (it restarted or evicted the session); resend records without reports"
                ),
            ));
        }
        let ring = known.unwrap_or_else(|| self.session(session_id));
        ring.acknowledge(after_seq);
        let wake = ring.subscribe();
        let state = StreamState { ring, cursor: after_seq, wake };
        Ok(futures::stream::unfold(state, |mut state| async move {
            loop {
                state.wake.borrow_and_update();
                let (reports, closed) = state.ring.read_after(state.cursor, READ_CHUNK);
                if let Some(last) = reports.last() {
                    state.cursor = last.seq;
                    return Some((reports, state));
                }
                if closed || state.wake.changed().await.is_err() {
                    return None;
                }
            }
        }))
    }
}

struct StreamState {
    ring: Arc<SessionRing>,
    cursor: u64,
    wake: tokio::sync::watch::Receiver<u64>,
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::record::Delivered;

    fn deliver(ring: &Arc<SessionRing>, record_id: u64, offset: i64) {
        let slot = ring.try_reserve().expect("slot");
        slot.fill(record_id, "t", Ok(Delivered { partition: 0, offset, timestamp_ms: None }), 1);
    }

    fn hub(max_sessions: usize) -> Arc<DeliveryHub> {
        DeliveryHub::new(DeliveryConfig { max_sessions, ..DeliveryConfig::default() })
    }

    #[tokio::test]
    async fn stream_sends_kept_then_live_reports_and_ends_on_close() {
        let hub = hub(8);
        let ring = hub.session("worker-1");
        deliver(&ring, 7, 5);
        let mut stream = Box::pin(hub.stream("worker-1", 0).expect("stream"));
        let first: Vec<u64> = stream.next().await.expect("batch").iter().map(|r| r.record_id).collect();
        assert_eq!(first, vec![7]);
        deliver(&ring, 8, 6);
        deliver(&ring, 9, 7);
        let live: Vec<(u64, u64)> = stream.next().await.expect("batch").iter().map(|r| (r.seq, r.record_id)).collect();
        assert_eq!(live, vec![(2, 8), (3, 9)], "reports available together come together");
        hub.close_all();
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn reports_go_only_to_their_session() {
        let hub = hub(8);
        deliver(&hub.session("a"), 1, 0);
        deliver(&hub.session("b"), 2, 1);
        hub.close_all();
        let batches: Vec<Vec<DeliveryReport>> = hub.stream("b", 0).expect("stream").collect().await;
        let seen: Vec<u64> = batches.concat().iter().map(|r| r.record_id).collect();
        assert_eq!(seen, vec![2]);
    }

    #[test]
    fn resuming_a_session_this_instance_never_numbered_fails() {
        let hub = hub(8);
        let unknown = hub.stream("restarted", 5).err().map(|error| error.code);
        assert_eq!(unknown, Some(ErrorCode::UnknownSession));
        deliver(&hub.session("s"), 1, 0);
        assert!(hub.stream("s", 1).is_ok(), "resuming after the last report is fine");
        assert!(hub.stream("s", 9).is_err(), "a seq from an earlier instance");
    }

    #[test]
    fn session_count_is_bounded() {
        let hub = hub(2);
        for id in ["a", "b", "c"] {
            hub.session(id);
        }
        assert_eq!(hub.session_count(), 2);
    }
}

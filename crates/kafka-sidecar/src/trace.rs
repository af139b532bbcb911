//! Trace and correlation context: W3C `traceparent`/`tracestate`, `X-Correlation-Id` and
//! `X-Traceability-Id` (seed 002's names), validated, completed and stamped on records.
//!
//! Both edges (HTTP headers, gRPC metadata, an `http::HeaderMap` underneath) build one
//! [`TraceContext`] per call from what the caller sent, read by [`read_incoming`] in one place
//! ([`Incoming`]); the context knows nothing of HTTP or gRPC. The rules:
//!
//! * **The sidecar is a hop.** A valid incoming `traceparent` keeps its trace id; the sidecar's own
//!   span id becomes the parent id of what it writes, so exported spans (OTLP) line up: caller ->
//!   sidecar span -> consumer. Without one (or with an invalid one) a new trace starts here when
//!   `trace.generate_traceparent` is on.
//! * **Invalid values are treated as absent, never propagated, never refused.** A tracing header
//!   must not make a produce fail (W3C: an invalid `traceparent` is ignored and a new one made).
//!   Invalid: a `traceparent` that is not version-00 shaped lowercase hex, or has an all-zero trace
//!   or parent id, or comes twice; ids that are empty, longer than [`MAX_ID_BYTES`] or hold more than
//!   visible ASCII. Replacements are echoed on the HTTP response, so a caller sees them. (Seed 002's
//!   per-record body fields are the exception: they are explicit API fields, so the HTTP edge
//!   answers `INVALID_REQUEST` naming the field; see [`check_id`].)
//! * `tracestate` goes with its `traceparent`: dropped when the `traceparent` is, kept to
//!   [`MAX_TRACESTATE_BYTES`] and 32 members by dropping members from the end (W3C's truncation).
//! * **Record-level values win.** A record that carries its own valid `traceparent` (with its
//!   `tracestate`), `X-Correlation-Id` or `X-Traceability-Id` header keeps it; the call's values
//!   fill only what it lacks ([`RecordTrace::stamp`]).
//! * **Cheap per record.** [`RecordTrace`] holds the call's header values as `Bytes`, built once per
//!   call; stamping a record without trace headers of its own is one scan of its header names and
//!   at most four pushes (a name `String` each; the value is a shared `Bytes`).

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::config::TraceConfig;

/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";
/// Seed 002's (light-4j's) correlation id header.
pub const CORRELATION_ID: &str = "X-Correlation-Id";
/// Seed 002's (light-4j's) traceability id header.
pub const TRACEABILITY_ID: &str = "X-Traceability-Id";
/// The record headers a call's trace values are written under, in this order.
pub const RECORD_HEADERS: [&str; 4] = [TRACEPARENT, TRACESTATE, CORRELATION_ID, TRACEABILITY_ID];
/// The longest correlation or traceability id kept.
pub const MAX_ID_BYTES: usize = 256;
/// The longest `tracestate` kept (W3C asks to propagate at least 512 characters).
pub const MAX_TRACESTATE_BYTES: usize = 512;
/// W3C's limit on `tracestate` list members.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A parsed W3C `traceparent`: trace id, parent (span) id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, not all zero: the span that sent it.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>` (lowercase). Later versions are read by their first
    /// four fields, as W3C asks; version `ff` and anything malformed is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim_matches([' ', '\t']);
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        let exact = bytes.len() == 55;
        if version == 0xff || (version == 0 && !exact) || (!exact && bytes[55] != b'-') {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        decode_hex(&bytes[3..35], &mut trace_id)?;
        decode_hex(&bytes[36..52], &mut parent_id)?;
        let flags = hex_byte(&bytes[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, parent_id, flags })
    }

    /// A fresh, sampled trace whose first span is `span_id`.
    pub fn generate(span_id: [u8; 8]) -> Self {
        let mut trace_id: [u8; 16] = rand::random();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Self { trace_id, parent_id: span_id, flags: 1 }
    }

    /// The header text, version 00.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.parent_id), self.flags)
    }

    /// The trace id as 32 lowercase hex digits (what logs and OTLP show).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// A random span id, never all zero.
pub fn new_span_id() -> [u8; 8] {
    let mut id: [u8; 8] = rand::random();
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// What a caller sent, unvalidated. Absent and empty are the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct Incoming<'a> {
    /// `traceparent`; `None` also when it came more than once (W3C: then it is invalid).
    pub traceparent: Option<&'a str>,
    /// `tracestate` (several headers joined with `,` by the edge).
    pub tracestate: Option<&'a str>,
    /// `X-Correlation-Id`.
    pub correlation_id: Option<&'a str>,
    /// `X-Traceability-Id`.
    pub traceability_id: Option<&'a str>,
}

/// Reads what a caller sent from its request headers or call metadata (repeated values as W3C
/// says: `tracestate` joined, anything else then invalid) and hands it to `use_it`.
pub fn read_incoming<T>(headers: &HeaderMap, use_it: impl FnOnce(&Incoming<'_>) -> T) -> T {
    let tracestate: Vec<&str> = headers.get_all(TRACESTATE).iter().filter_map(|value| value.to_str().ok()).collect();
    let tracestate = (!tracestate.is_empty()).then(|| tracestate.join(","));
    use_it(&Incoming {
        traceparent: single_header(headers, TRACEPARENT),
        tracestate: tracestate.as_deref(),
        correlation_id: single_header(headers, CORRELATION_ID),
        traceability_id: single_header(headers, TRACEABILITY_ID),
    })
}

/// A header's text when it is there exactly once (W3C: a repeated `traceparent` is invalid;
/// repeated ids are ambiguous, so the same), trimmed, if not empty.
pub fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim).filter(|text| !text.is_empty())
}

/// One call's trace values, validated and completed per configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The caller's span, from a valid incoming `traceparent`.
    pub caller: Option<TraceParent>,
    /// The sidecar's span: the trace id and, as `parent_id`, the sidecar's own span id. What records
    /// carry. `None` when no valid `traceparent` came and none is generated.
    pub span: Option<TraceParent>,
    /// `tracestate`, only with a `span` that continues the caller's trace.
    pub tracestate: Option<String>,
    /// `X-Correlation-Id`.
    pub correlation_id: Option<String>,
    /// `X-Traceability-Id`.
    pub traceability_id: Option<String>,
}

impl TraceContext {
    /// Validates what the caller sent and fills the gaps `config` asks for. The sidecar's span id
    /// is random; [`TraceContext::with_span_id`] replaces it when a tracer assigned one.
    pub fn resolve(incoming: &Incoming<'_>, config: &TraceConfig) -> Self {
        let caller = incoming.traceparent.and_then(TraceParent::parse);
        let span_id = new_span_id();
        let span = match caller {
            Some(caller) => Some(TraceParent { parent_id: span_id, ..caller }),
            None if config.generate_traceparent => Some(TraceParent::generate(span_id)),
            None => None,
        };
        let tracestate = caller.and(incoming.tracestate).and_then(sanitize_tracestate);
        let id = |given: Option<&str>, generate: bool| match given.filter(|id| valid_id(id.as_bytes())) {
            Some(id) => Some(id.to_string()),
            None => generate.then(new_id),
        };
        Self {
            caller,
            span,
            tracestate,
            correlation_id: id(incoming.correlation_id, config.generate_correlation_id),
            traceability_id: id(incoming.traceability_id, config.generate_traceability_id),
        }
    }

    /// The same context with the sidecar's span id set to `span_id` (e.g. the exported span's).
    pub fn with_span_id(mut self, span_id: [u8; 8]) -> Self {
        if let Some(span) = &mut self.span {
            span.parent_id = span_id;
        }
        self
    }

    /// The `traceparent` the sidecar sends on: its own span as the parent.
    pub fn traceparent(&self) -> Option<String> {
        self.span.map(|span| span.header())
    }

    /// The trace id, for log fields.
    pub fn trace_id(&self) -> Option<String> {
        self.span.map(|span| span.trace_id_hex())
    }

    /// The header values every record of the call gets (unless it has its own).
    pub fn record_trace(&self) -> RecordTrace {
        RecordTrace::from_valid([
            self.traceparent(),
            self.tracestate.clone(),
            self.correlation_id.clone(),
            self.traceability_id.clone(),
        ])
    }
}

/// A call's trace header values for its records, built once per call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordTrace {
    /// Values in [`RECORD_HEADERS`] order.
    values: [Option<Bytes>; 4],
}

impl RecordTrace {
    /// Values already known to be valid (what [`TraceContext`] resolved).
    fn from_valid(values: [Option<String>; 4]) -> Self {
        Self { values: values.map(|value| value.map(Bytes::from)) }
    }

    /// Values as an edge holds them after [`TraceContext`] ran (e.g. the request headers it
    /// rewrote); each is checked again, so a route reached without the edge's middleware still
    /// never stamps an invalid value.
    pub fn from_incoming(incoming: &Incoming<'_>) -> Self {
        let traceparent = incoming.traceparent.and_then(TraceParent::parse);
        let tracestate = traceparent.and(incoming.tracestate).and_then(sanitize_tracestate);
        let id = |id: Option<&str>| id.filter(|id| valid_id(id.as_bytes())).map(str::to_string);
        Self::from_valid([
            traceparent.map(|parent| parent.header()),
            tracestate,
            id(incoming.correlation_id),
            id(incoming.traceability_id),
        ])
    }

    /// Whether there is nothing to stamp.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }

    /// Adds the call's values to one record's headers, keeping the record's own valid ones: an
    /// own `traceparent` brings its own `tracestate` (or none); an own invalid value is removed.
    pub fn stamp(&self, headers: &mut Vec<(String, Bytes)>) {
        let mut own = [false; 4];
        if headers.iter().any(|(name, _)| field_of(name).is_some()) {
            own = keep_valid_own(headers);
        }
        headers.reserve(self.values.iter().zip(own).filter(|(value, own)| value.is_some() && !own).count());
        for ((name, value), own) in RECORD_HEADERS.iter().zip(&self.values).zip(own) {
            if let (Some(value), false) = (value, own) {
                headers.push(((*name).to_string(), value.clone()));
            }
        }
    }
}

/// Removes a record's invalid or repeated trace headers; says which fields it keeps its own of.
fn keep_valid_own(headers: &mut Vec<(String, Bytes)>) -> [bool; 4] {
    let mut own = [false; 4];
    headers.retain(|(name, value)| {
        let Some(field) = field_of(name) else { return true };
        let valid = match field {
            0 => std::str::from_utf8(value).ok().and_then(TraceParent::parse).is_some(),
            1 => std::str::from_utf8(value).ok().and_then(sanitize_tracestate).is_some(),
            _ => valid_id(value),
        };
        let keep = valid && !own[field];
        own[field] |= keep;
        keep
    });
    // A tracestate belongs to its traceparent: without its own traceparent the record's tracestate
    // goes; with one, the call's tracestate must not be attached to it.
    if own[0] {
        own[1] = true;
    } else if own[1] {
        headers.retain(|(name, _)| field_of(name) != Some(1));
        own[1] = false;
    }
    own
}

/// The trace headers of a consumed record worth sending on (e.g. to the reactive backend): the
/// first valid value of each, under its canonical name; `tracestate` only with a valid
/// `traceparent`. Invalid values are left behind, never propagated.
pub fn forwardable<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<(&'static str, String)> {
    let mut found: [Option<String>; 4] = Default::default();
    for (name, value) in headers {
        let Some(field) = field_of(name) else { continue };
        let Ok(text) = std::str::from_utf8(value) else { continue };
        if found[field].is_some() {
            continue;
        }
        found[field] = match field {
            0 => TraceParent::parse(text).map(|parent| parent.header()),
            1 => sanitize_tracestate(text),
            _ => valid_id(value).then(|| text.to_string()),
        };
    }
    if found[0].is_none() {
        found[1] = None;
    }
    RECORD_HEADERS.into_iter().zip(found).filter_map(|(name, value)| Some((name, value?))).collect()
}

/// The index in [`RECORD_HEADERS`] of a header name (case-insensitive).
fn field_of(name: &str) -> Option<usize> {
    RECORD_HEADERS.iter().position(|known| known.eq_ignore_ascii_case(name))
}

/// Whether a correlation or traceability id may be propagated: 1..=[`MAX_ID_BYTES`] visible ASCII.
pub fn valid_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.iter().all(|byte| (0x21..=0x7e).contains(byte))
}

/// Checks an id given as an explicit API field; the error says why, for an `INVALID_REQUEST`.
pub fn check_id(id: &str) -> Result<(), String> {
    if valid_id(id.as_bytes()) {
        Ok(())
    } else {
        Err(format!("must be 1 to {MAX_ID_BYTES} visible ASCII characters (no spaces)"))
    }
}

/// A `tracestate` as it may be sent on: `None` when malformed; otherwise its members (`key=value`,
/// printable ASCII), empty ones dropped, trailing ones dropped beyond 32 members or
/// [`MAX_TRACESTATE_BYTES`].
pub fn sanitize_tracestate(text: &str) -> Option<String> {
    let mut kept = String::new();
    let mut members = 0;
    for member in text.split(',').map(|member| member.trim_matches([' ', '\t'])) {
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        let printable = |part: &str| part.bytes().all(|byte| (0x20..=0x7e).contains(&byte) && byte != b',');
        if key.is_empty() || value.is_empty() || !printable(key) || !printable(value) || key.contains(' ') {
            return None;
        }
        let needed = member.len() + usize::from(!kept.is_empty());
        if members == MAX_TRACESTATE_MEMBERS || kept.len() + needed > MAX_TRACESTATE_BYTES {
            break;
        }
        if !kept.is_empty() {
            kept.push(',');
        }
        kept.push_str(member);
        members += 1;
    }
    (!kept.is_empty()).then_some(kept)
}

/// A fresh id: a random (version 4) UUID in its usual text form.
pub fn new_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let text = hex(&bytes);
    format!("{}-{}-{}-{}-{}", &text[0..8], &text[8..12], &text[12..16], &text[16..20], &text[20..32])
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Lowercase hex only: W3C forbids uppercase in `traceparent`.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(nibble(pair[0])? << 4 | nibble(pair[1])?)
}

fn decode_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

#[cfg(test)]
mod tests;

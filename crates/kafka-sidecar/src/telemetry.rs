//! Logging set-up from the `log` configuration section, and the log filter's runtime control
//! (`GET|PUT /admin/logging`).
//!
//! The subscriber is process-global (tracing's global default), so its filter's control is too:
//! [`init`] installs both once and [`log_control`] hands the control to whoever wires the admin
//! port. A process that never called [`init`] (the daemon run as a library, as the tests do) has no
//! control, and the admin port says so instead of pretending to change a filter nobody applies.
//!
//! With `trace.otlp.endpoint` set, [`SpanExport`] sends the spans the filter lets through (request
//! spans are `info`) to an OpenTelemetry collector over OTLP/HTTP protobuf, batched on the SDK's
//! own thread (bounded queue: spans beyond it are dropped, never waited for). [`adopt`] ties each
//! request span to the caller's W3C trace, so the exported span and the `traceparent` written to
//! records name the same span.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Serialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat, OtlpConfig};
use crate::trace::{TraceContext, TraceParent};

/// The control installed by [`init`]: `None` inside when another subscriber was there first.
static CONTROL: OnceLock<Option<LogControl>> = OnceLock::new();
/// The span exporter of the installed subscriber, when export is on.
static EXPORT: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber (text or JSON lines on stderr) once per process and returns the
/// control of its filter; a bad `log.level` falls back to `info` with a warning. Later calls
/// change nothing and return the same control. `None` when another subscriber was installed
/// before (then this process's filter is not ours to change).
pub fn init(config: &LogConfig) -> Option<LogControl> {
    init_with_export(config, None)
}

/// [`init`], with `export` (if any) receiving the spans; the first call decides for the process.
pub fn init_with_export(config: &LogConfig, export: Option<SpanExport>) -> Option<LogControl> {
    CONTROL.get_or_init(|| install(config, export)).clone()
}

/// The control [`init`] installed, if it did.
pub fn log_control() -> Option<LogControl> {
    CONTROL.get().cloned().flatten()
}

fn install(config: &LogConfig, export: Option<SpanExport>) -> Option<LogControl> {
    let (filter, bad_filter) = match EnvFilter::try_new(&config.level) {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let output = match config.format {
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    let spans = export.as_ref().map(|export| {
        let tracer = export.provider.tracer("kafka-sidecar");
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    tracing_subscriber::registry().with(filter).with(output).with(spans).try_init().ok()?;
    if let Some(export) = export {
        let _ = EXPORT.set(export.provider);
    }
    if let Some(error) = bad_filter {
        tracing::warn!(level = %config.level, error = %error, "invalid log.level, using info");
    }
    Some(LogControl { handle })
}

/// Why span export could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start OTLP span export to {endpoint}: {reason}")]
pub struct ExportError {
    /// The traces URL.
    pub endpoint: String,
    /// What the exporter said.
    pub reason: String,
}

/// OTLP span export: a tracer provider with a batching exporter, off unless configured.
pub struct SpanExport {
    provider: SdkTracerProvider,
}

impl SpanExport {
    /// The exporter for `config`; `None` when `trace.otlp.endpoint` is empty. Nothing is sent until
    /// spans end; an unreachable collector costs dropped spans, never a request.
    pub fn start(config: &OtlpConfig) -> Result<Option<Self>, ExportError> {
        if !config.enabled() {
            return Ok(None);
        }
        let endpoint = config.traces_url();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(std::time::Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|error| ExportError { endpoint, reason: error.to_string() })?;
        let resource = Resource::builder().with_service_name(config.service_name.clone()).build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        Ok(Some(Self { provider }))
    }
}

/// Sends the spans ended so far now, waiting for the collector (blocking: call it off the async
/// runtime). Nothing happens without export.
pub fn flush_spans() {
    if let Some(provider) = EXPORT.get()
        && let Err(error) = provider.force_flush()
    {
        tracing::warn!(error = %error, "spans could not be exported");
    }
}

/// Flushes and stops span export at exit (blocking, like [`flush_spans`]).
pub fn shutdown_export() {
    if let Some(provider) = EXPORT.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(error = %error, "span export did not shut down cleanly");
    }
}

/// Ties a request's span to its trace context. With OTLP export on, the span continues the
/// caller's trace (or, for a trace started here, the span's own trace is the one records get) and
/// the context takes the exported span's id, so records name that span as their parent. Without
/// export the context is returned as it is.
pub fn adopt(span: &tracing::Span, context: TraceContext) -> TraceContext {
    if EXPORT.get().is_none() {
        return context;
    }
    if let Some(caller) = context.caller {
        let state = context.tracestate.as_deref().and_then(|text| text.parse::<TraceState>().ok()).unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(caller.trace_id),
            SpanId::from_bytes(caller.parent_id),
            TraceFlags::new(caller.flags),
            true,
            state,
        );
        // Fails only when the span is disabled by the filter: then nothing is exported for it.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let exported = span.context().span().span_context().clone();
    if !exported.is_valid() {
        return context;
    }
    let exported_parent = TraceParent {
        trace_id: exported.trace_id().to_bytes(),
        parent_id: exported.span_id().to_bytes(),
        flags: exported.trace_flags().to_u8(),
    };
    match (context.caller, context.span) {
        (Some(caller), Some(_)) if caller.trace_id == exported_parent.trace_id => {
            context.with_span_id(exported_parent.parent_id)
        }
        (None, Some(_)) => TraceContext { span: Some(exported_parent), ..context },
        _ => context,
    }
}

/// Reads and replaces the running log filter.
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

/// Why the filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    /// The filter does not parse; the message says which directive.
    #[error("invalid log filter {filter:?}: {reason}")]
    Invalid {
        /// The filter as given.
        filter: String,
        /// What `tracing` said.
        reason: String,
    },
    /// The subscriber holding the filter is gone.
    #[error("the log filter cannot be reached: {0}")]
    Unavailable(String),
}

impl LogControl {
    /// Wraps the handle of a reloadable filter (for subscribers built elsewhere, e.g. tests).
    pub fn new(handle: reload::Handle<EnvFilter, Registry>) -> Self {
        Self { handle }
    }

    /// The filter in force, in `tracing`'s normal form (`target=level,...,level`).
    pub fn current(&self) -> Result<LogFilter, LogFilterError> {
        let text = self.handle.with_current(ToString::to_string).map_err(unavailable)?;
        Ok(LogFilter::describe(&text))
    }

    /// Replaces the filter, effective for every callsite at once; nothing changes when it does not
    /// parse.
    pub fn set(&self, filter: &str) -> Result<LogFilter, LogFilterError> {
        let invalid = |reason: String| LogFilterError::Invalid { filter: filter.to_string(), reason };
        if filter.trim().is_empty() {
            return Err(invalid("the filter is empty".into()));
        }
        let parsed = EnvFilter::builder().parse(filter).map_err(|error| invalid(error.to_string()))?;
        self.handle.reload(parsed).map_err(unavailable)?;
        self.current()
    }
}

fn unavailable(error: reload::Error) -> LogFilterError {
    LogFilterError::Unavailable(error.to_string())
}

/// A log filter, whole and taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LogFilter {
    /// The `tracing` filter string (`EnvFilter` syntax).
    pub filter: String,
    /// The level for targets no directive names; `None` means they are off.
    pub level: Option<String>,
    /// Level per target (module path), e.g. `kafka_sidecar::consumer: debug`.
    pub modules: BTreeMap<String, String>,
    /// Directives that are more than a target and a level (span or field filters), as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

impl LogFilter {
    /// Takes a filter string apart into its default level, per-module levels and the rest.
    pub fn describe(filter: &str) -> Self {
        let mut described =
            Self { filter: filter.to_string(), level: None, modules: BTreeMap::new(), other: Vec::new() };
        for directive in split_directives(filter) {
            match top_level_split(directive) {
                None if LevelFilter::from_str(directive).is_ok() => described.level = Some(directive.to_lowercase()),
                // A bare target means every level of it.
                None if !directive.contains('[') => {
                    described.modules.insert(directive.to_string(), "trace".into());
                }
                Some((target, level)) if !target.contains('[') && !target.is_empty() => {
                    described.modules.insert(target.to_string(), level.to_lowercase());
                }
                _ => described.other.push(directive.to_string()),
            }
        }
        described
    }

    /// The filter string for a default level and per-module levels, checking each part so the
    /// error names it.
    pub fn compose(level: &str, modules: &BTreeMap<String, String>) -> Result<String, String> {
        let checked_level = |level: &str, whose: &str| {
            LevelFilter::from_str(level.trim())
                .map(|_| level.trim().to_lowercase())
                .map_err(|_| format!("{whose} level {level:?} is not one of off, error, warn, info, debug, trace"))
        };
        let mut directives = vec![checked_level(level, "the")?];
        for (module, module_level) in modules {
            let module = module.trim();
            if module.is_empty() || module.contains(|c: char| c.is_whitespace() || ",=[]{}\"".contains(c)) {
                return Err(format!("{module:?} is not a module path (e.g. kafka_sidecar::consumer)"));
            }
            directives.push(format!("{module}={}", checked_level(module_level, &format!("module {module}'s"))?));
        }
        Ok(directives.join(","))
    }
}

/// Splits at the commas between directives, not those inside `[span{field=value,...}]`.
fn split_directives(filter: &str) -> Vec<&str> {
    let mut directives = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, character) in filter.char_indices() {
        match character {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                directives.push(&filter[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    directives.push(&filter[start..]);
    directives.into_iter().map(str::trim).filter(|directive| !directive.is_empty()).collect()
}

/// `target=level` at the last `=` outside brackets; `None` for a bare level or target.
fn top_level_split(directive: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut split = None;
    for (index, character) in directive.char_indices() {
        match character {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            '=' if depth == 0 => split = Some(index),
            _ => {}
        }
    }
    split.map(|index| (directive[..index].trim(), directive[index + 1..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reloadable filter on a subscriber that is not installed globally.
    fn control(filter: &str) -> (LogControl, impl tracing::Subscriber) {
        let (layer, handle) = reload::Layer::new(EnvFilter::new(filter));
        (LogControl::new(handle), tracing_subscriber::registry().with(layer))
    }

    #[test]
    fn describes_levels_modules_and_the_rest() {
        let described = LogFilter::describe("kafka_sidecar::consumer=debug,INFO,rdkafka,h2[conn]=warn");
        assert_eq!(described.level.as_deref(), Some("info"));
        assert_eq!(described.modules["kafka_sidecar::consumer"], "debug");
        assert_eq!(described.modules["rdkafka"], "trace");
        assert_eq!(described.other, vec!["h2[conn]=warn".to_string()]);
        assert_eq!(LogFilter::describe("a[{x=1,y=2}]=debug").other, vec!["a[{x=1,y=2}]=debug".to_string()]);
        assert_eq!(LogFilter::describe("kafka_sidecar=warn").level, None);
    }

    #[test]
    fn composes_a_filter_and_names_a_bad_part() {
        let modules = BTreeMap::from([("kafka_sidecar::consumer".to_string(), "DEBUG".to_string())]);
        assert_eq!(LogFilter::compose("info", &modules).unwrap(), "info,kafka_sidecar::consumer=debug");
        assert!(LogFilter::compose("loud", &BTreeMap::new()).unwrap_err().contains("\"loud\""));
        let bad_level = BTreeMap::from([("kafka_sidecar".to_string(), "chatty".to_string())]);
        assert!(LogFilter::compose("info", &bad_level).unwrap_err().contains("kafka_sidecar"));
        let bad_module = BTreeMap::from([("a=b".to_string(), "debug".to_string())]);
        assert!(LogFilter::compose("info", &bad_module).unwrap_err().contains("a=b"));
    }

    #[test]
    fn set_replaces_the_filter_and_a_bad_one_changes_nothing() {
        let (control, subscriber) = control("info");
        assert_eq!(control.current().unwrap().level.as_deref(), Some("info"));
        let applied = control.set("warn,kafka_sidecar::consumer=debug").unwrap();
        assert_eq!(applied.level.as_deref(), Some("warn"));
        assert_eq!(applied.modules["kafka_sidecar::consumer"], "debug");
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            assert!(tracing::enabled!(target: "kafka_sidecar::consumer", tracing::Level::DEBUG));
            assert!(!tracing::enabled!(target: "kafka_sidecar::producer", tracing::Level::INFO));
        });

        let error = control.set("info,kafka_sidecar=chatty").unwrap_err();
        assert!(matches!(&error, LogFilterError::Invalid { filter, .. } if filter.contains("chatty")), "{error}");
        assert!(matches!(control.set("  "), Err(LogFilterError::Invalid { .. })));
        assert_eq!(control.current().unwrap().filter, applied.filter);
    }

    #[test]
    fn a_control_whose_subscriber_is_gone_says_so() {
        let (control, subscriber) = control("info");
        drop(subscriber);
        assert!(matches!(control.current(), Err(LogFilterError::Unavailable(_))));
        assert!(matches!(control.set("debug"), Err(LogFilterError::Unavailable(_))));
    }
}

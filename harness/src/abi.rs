//! Numbers of the proxy-wasm ABI (0.2.0 and 0.2.1) and of WASI preview1 that the host
//! speaks: status codes, map and buffer types, stream types, log levels, filter
//! statuses and WASI errnos.
//!
//! They live in one place so each host function can name what it returns instead of
//! repeating magic numbers, and so the report can print statuses by name.

/// `proxy_status_t`: what every `proxy_*` host function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// The call succeeded.
    Ok = 0,
    /// The key, map, queue or context was not there.
    NotFound = 1,
    /// An argument was out of range or not valid in this callback.
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// A guest pointer or length pointed outside linear memory.
    InvalidMemoryAccess = 6,
    /// The queue was empty.
    Empty = 7,
    /// A compare-and-swap on shared data lost the race.
    CasMismatch = 8,
    /// The host failed internally.
    InternalFailure = 10,
    /// The function exists in the ABI but this host does not implement it.
    Unimplemented = 12,
}

impl Status {
    /// The value returned to the guest.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// `proxy_map_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// Request headers of the current stream.
    RequestHeaders,
    /// Request trailers of the current stream.
    RequestTrailers,
    /// Response headers of the current stream.
    ResponseHeaders,
    /// Response trailers of the current stream.
    ResponseTrailers,
    /// Initial metadata of a gRPC callout answer.
    GrpcReceiveInitialMetadata,
    /// Trailing metadata of a gRPC callout answer.
    GrpcReceiveTrailingMetadata,
    /// Headers of an http callout answer.
    HttpCallResponseHeaders,
    /// Trailers of an http callout answer.
    HttpCallResponseTrailers,
}

impl MapType {
    /// The map type for a raw value, `None` past `MAX` (Envoy answers BadArgument).
    pub fn from_raw(raw: u32) -> Option<MapType> {
        Some(match raw {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }

    /// The name host-call counts print.
    pub fn name(self) -> &'static str {
        match self {
            MapType::RequestHeaders => "request_headers",
            MapType::RequestTrailers => "request_trailers",
            MapType::ResponseHeaders => "response_headers",
            MapType::ResponseTrailers => "response_trailers",
            MapType::GrpcReceiveInitialMetadata => "grpc_initial_metadata",
            MapType::GrpcReceiveTrailingMetadata => "grpc_trailing_metadata",
            MapType::HttpCallResponseHeaders => "http_call_response_headers",
            MapType::HttpCallResponseTrailers => "http_call_response_trailers",
        }
    }
}

/// `proxy_buffer_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    /// The request body (chunk or buffered data) of the current stream.
    HttpRequestBody,
    /// The response body (chunk or buffered data) of the current stream.
    HttpResponseBody,
    /// TCP data from downstream (network filters; never present in an HTTP replay).
    DownstreamData,
    /// TCP data from upstream (network filters; never present in an HTTP replay).
    UpstreamData,
    /// The body of an http callout answer.
    HttpCallResponseBody,
    /// A gRPC message received from a callout.
    GrpcReceiveBuffer,
    /// The VM configuration, during `proxy_on_vm_start`.
    VmConfiguration,
    /// The plugin configuration, during `proxy_on_configure`.
    PluginConfiguration,
    /// Arguments of a foreign function call.
    CallData,
}

impl BufferType {
    /// The buffer type for a raw value, `None` past `MAX` (Envoy answers BadArgument).
    pub fn from_raw(raw: u32) -> Option<BufferType> {
        Some(match raw {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }

    /// The name host-call counts print.
    pub fn name(self) -> &'static str {
        match self {
            BufferType::HttpRequestBody => "request_body",
            BufferType::HttpResponseBody => "response_body",
            BufferType::DownstreamData => "downstream_data",
            BufferType::UpstreamData => "upstream_data",
            BufferType::HttpCallResponseBody => "http_call_response_body",
            BufferType::GrpcReceiveBuffer => "grpc_receive_buffer",
            BufferType::VmConfiguration => "vm_configuration",
            BufferType::PluginConfiguration => "plugin_configuration",
            BufferType::CallData => "call_data",
        }
    }
}

/// `proxy_stream_type_t`, for `proxy_continue_stream` and `proxy_close_stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StreamType {
    /// The HTTP request direction.
    Request,
    /// The HTTP response direction.
    Response,
    /// TCP downstream.
    Downstream,
    /// TCP upstream.
    Upstream,
}

impl StreamType {
    /// The stream type for a raw value, `None` past `MAX`.
    pub fn from_raw(raw: u32) -> Option<StreamType> {
        Some(match raw {
            0 => StreamType::Request,
            1 => StreamType::Response,
            2 => StreamType::Downstream,
            3 => StreamType::Upstream,
            _ => return None,
        })
    }
}

/// `proxy_log_level_t`, with the names Envoy prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
    /// critical
    Critical,
}

impl LogLevel {
    /// The level for a raw value, `None` past critical (Envoy answers BadArgument).
    pub fn from_raw(raw: u32) -> Option<LogLevel> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    /// The raw value.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// The name Envoy prints.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }

    /// The level named `name` (as printed by [`LogLevel::name`]).
    pub fn parse(name: &str) -> Option<LogLevel> {
        (0..=5)
            .filter_map(LogLevel::from_raw)
            .find(|level| level.name() == name)
    }
}

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricType {
    /// A monotonic counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram.
    Histogram,
}

impl MetricType {
    /// The metric type for a raw value.
    pub fn from_raw(raw: u32) -> Option<MetricType> {
        Some(match raw {
            0 => MetricType::Counter,
            1 => MetricType::Gauge,
            2 => MetricType::Histogram,
            _ => return None,
        })
    }

    /// The low bits Envoy puts in a metric id to remember its type.
    pub fn tag(self) -> u32 {
        match self {
            MetricType::Counter => 0,
            MetricType::Gauge => 1,
            MetricType::Histogram => 2,
        }
    }

    /// The name the report prints.
    pub fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// What a header callback returned, as Envoy reads it (`FilterHeadersStatus`): 0 is
/// Continue; everything else stops (0.2.x hosts turn StopIteration into
/// StopAllIterationAndWatermark).
pub const FILTER_CONTINUE: u32 = 0;

/// What a body callback returned that asks Envoy to keep buffering (`StopIterationAndBuffer`).
pub const DATA_STOP_AND_BUFFER: u32 = 1;

/// WASI preview1 errno values the host returns.
pub mod errno {
    /// No error.
    pub const SUCCESS: u32 = 0;
    /// Bad file descriptor.
    pub const BADF: u32 = 8;
    /// Bad address.
    pub const FAULT: u32 = 21;
    /// Invalid argument.
    pub const INVAL: u32 = 28;
    /// Function not supported.
    pub const NOSYS: u32 = 52;
    /// Not supported.
    pub const NOTSUP: u32 = 58;
}

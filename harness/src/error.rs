//! The harness's typed errors, one enum per layer: loading a module, reading traffic,
//! reading the harness config, and running a replay.
//!
//! Messages read like ripgrep's: lowercase, the context first, a hint after `;`.

use std::path::PathBuf;

/// Loading, linking or starting a proxy-wasm module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module file could not be read.
    #[error("failed to read module {path}: {source}; build it with `make wasm` or pass --module")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused the engine configuration.
    #[error("failed to create the wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a valid module.
    #[error("failed to compile the module: {0}")]
    Compile(String),
    /// The module exports no proxy-wasm ABI marker this host speaks.
    #[error(
        "the module exports no supported ABI marker ({found}); expected `proxy_abi_version_0_2_1` or `proxy_abi_version_0_2_0`"
    )]
    Abi {
        /// What it exports instead.
        found: String,
    },
    /// The module imports a function the harness does not provide.
    #[error("the module imports `{module}.{field}`, which this host does not provide{hint}")]
    MissingImport {
        /// Import module.
        module: String,
        /// Import field.
        field: String,
        /// Why, when known.
        hint: String,
    },
    /// An import or export has a type the host does not expect.
    #[error("the module's `{name}` has the wrong type: {message}")]
    BadSignature {
        /// The import or export.
        name: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The module exports neither `malloc` nor `proxy_on_memory_allocate`.
    #[error(
        "the module exports no allocator; export `proxy_on_memory_allocate` or `malloc` as Envoy requires"
    )]
    MissingAllocator,
    /// The module exports no memory.
    #[error("the module exports no memory named `memory`")]
    MissingMemory,
    /// Instantiation failed.
    #[error("failed to instantiate the module: {0}")]
    Instantiate(String),
    /// `_initialize`, `main` or `_start` trapped.
    #[error("the module trapped while starting ({function}): {message}")]
    Start {
        /// The start function.
        function: String,
        /// The trap and its backtrace.
        message: String,
    },
}

/// Reading recorded traffic.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The file could not be read.
    #[error("failed to read traffic file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is none of the known formats (empty, cut short, or not JSON).
    #[error(
        "traffic file {path}: {reason} (reading stopped at line {line} column {column}); expected HAR 1.2, an Envoy tap trace or stakeguard JSON Lines"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// One-based line where reading stopped.
        line: usize,
        /// Column on that line.
        column: usize,
    },
    /// A traffic directory holds no traffic files.
    #[error(
        "traffic directory {path} holds no files; expected the files Envoy's `file_per_tap` sink (or any recorder) wrote there"
    )]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// One entry is unreadable.
    #[error("traffic file {path}: entry {entry}{line}: {field}: {message}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// Zero-based entry index.
        entry: usize,
        /// `" (line N)"` for JSON Lines, empty otherwise.
        line: String,
        /// The field (JSON path) at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reading the harness config (callout stubs).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read harness config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("harness config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Any harness failure.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Loading the module.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Reading traffic.
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    /// Reading the config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Starting the plugin failed (`proxy_on_vm_start` or `proxy_on_configure`): the
    /// module's own log lines of the start (a refused policy's errors, each with its
    /// JSON path, as `check` prints them), then why it stopped.
    #[error("{}rejected on worker {worker}: {reason}", logs.iter().map(|l| format!("{l}\n")).collect::<String>())]
    PluginStart {
        /// The worker.
        worker: usize,
        /// What happened (a trap, or a callback that returned false).
        reason: String,
        /// The module's log lines during the start, `level: message`, at the configured
        /// log level and above.
        logs: Vec<String>,
    },
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

//! Building the policy's inventory from what already exists: recorded traffic
//! (`stakeguard discover`) and OpenAPI documents (`stakeguard import`).
//!
//! Both end the same way: a list of [`NewApi`]s merged into a policy document by
//! [`merge::merge`], which keeps every hand-written field, routes conflicts through the
//! engine's own route index, and reports what it changed and what it refused. The
//! policy documents are read and written with the engine's JSON tree, which keeps keys
//! in document order and numbers as written, so a merged policy reads like the original.
//!
//! - [`template`]: the path-template heuristic (which segments are values);
//! - [`discover`]: endpoints, their statistics and their coverage by a policy;
//! - [`skeleton`]: the policy listing the endpoints no API covers;
//! - [`source`]: reading a JSON or YAML document into that tree;
//! - [`openapi`]: the APIs an OpenAPI 3.0/3.1 document describes;
//! - [`merge`]: merging APIs into a policy document.

pub mod discover;
pub mod merge;
pub mod openapi;
pub mod skeleton;
pub mod source;
pub mod template;

/// The owner of an API nobody has claimed yet.
pub const UNASSIGNED: &str = "unassigned";

/// The tier APIs get when nothing says how much is at stake: monitor mode and no
/// controls, so a new entry never blocks anything until its owner gives it a tier.
pub const UNCLASSIFIED: &str = "unclassified";

/// One API to put into a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApi {
    /// The API's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The owner, when the source names one (the merge's default otherwise).
    pub owner: Option<String>,
    /// How to reach the owner.
    pub contact: Option<String>,
    /// The tier, when the source names one (the merge's default otherwise).
    pub tier: Option<String>,
    /// Event name and severity pairs.
    pub incidents: Vec<(String, String)>,
    /// The `lifecycle` object, when not active.
    pub lifecycle: Option<stakeguard_policies::json::Json<'static>>,
    /// Its routes.
    pub routes: Vec<NewRoute>,
}

/// One route of a [`NewApi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoute {
    /// An exact host, or any host.
    pub host: Option<String>,
    /// The path pattern.
    pub path: String,
    /// Uppercase method names.
    pub methods: Vec<String>,
    /// Where it came from, for messages (a JSON pointer, an endpoint).
    pub origin: String,
}

//! The skeleton policy of `discover --write-skeleton`: the endpoints no API covers, as
//! APIs owned by [`UNASSIGNED`] in the [`UNCLASSIFIED`] tier (monitor mode, no
//! controls), merged into the given policy or into a new document, for the business
//! owners to claim and classify.
//!
//! Endpoints become APIs by path group ([`template::path_group`]: `/api/v1/internal/...`
//! is `internal` `v1`; no version segment gives `unversioned`), one route per host and
//! template with the methods seen. Only shadow endpoints are listed: a method an API
//! does not serve (405) belongs in that API's routes, which the skeleton leaves to its
//! owner, and ambiguous paths are refused by the engine whatever the policy says.

use stakeguard_policies::json::Json;

use super::discover::Inventory;
use super::merge::{self, Defaults, Merged, ShapeError};
use super::{NewApi, NewRoute, UNASSIGNED, UNCLASSIFIED, template};

/// The version of an API whose paths carry none.
pub const UNVERSIONED: &str = "unversioned";

/// The APIs of the endpoints no API covers (every endpoint when `covered_by_policy`
/// is false: without a policy nothing is covered).
pub fn uncovered_apis(inventory: &Inventory, covered_by_policy: bool) -> Vec<NewApi> {
    let mut apis: Vec<NewApi> = Vec::new();
    for endpoint in &inventory.endpoints {
        if covered_by_policy && !endpoint.is_shadow() {
            continue;
        }
        let (name, version) = template::path_group(&endpoint.path);
        let version = version.unwrap_or_else(|| UNVERSIONED.to_owned());
        let at = match apis
            .iter()
            .position(|a| a.name == name && a.version == version)
        {
            Some(at) => at,
            None => {
                apis.push(NewApi {
                    name,
                    version,
                    owner: None,
                    contact: None,
                    tier: None,
                    incidents: Vec::new(),
                    lifecycle: None,
                    routes: Vec::new(),
                });
                apis.len() - 1
            }
        };
        let Some(api) = apis.get_mut(at) else {
            continue;
        };
        let method = endpoint.method.to_ascii_uppercase();
        match api
            .routes
            .iter_mut()
            .find(|r| r.path == endpoint.path && r.host.as_deref() == Some(&endpoint.host))
        {
            Some(route) if !route.methods.contains(&method) => route.methods.push(method),
            Some(_) => {}
            None => api.routes.push(NewRoute {
                host: Some(endpoint.host.clone()),
                path: endpoint.path.clone(),
                methods: vec![method],
                origin: format!("{} {}{}", endpoint.method, endpoint.host, endpoint.path),
            }),
        }
    }
    apis
}

/// The skeleton: `policy` (a parsed policy document) or a new document, with the
/// uncovered endpoints added.
pub fn skeleton(
    policy: Option<Json<'static>>,
    inventory: &Inventory,
) -> Result<Merged, ShapeError> {
    let covered_by_policy = policy.is_some();
    let document = policy.unwrap_or_else(|| {
        Json::Object(vec![
            ("revision".into(), Json::string("discovered")),
            ("tiers".into(), Json::Object(Vec::new())),
            ("apis".into(), Json::Array(Vec::new())),
        ])
    });
    let defaults = Defaults {
        owner: UNASSIGNED.to_owned(),
        tier: UNCLASSIFIED.to_owned(),
    };
    merge::merge(
        document,
        &uncovered_apis(inventory, covered_by_policy),
        &defaults,
    )
}

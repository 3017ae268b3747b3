//! `stakeguard diff`: replay the same traffic under two policies and list the requests
//! whose outcome, status or decision changed, grouped by the decision's api/control.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;

use stakeguard_harness::Harness;
use stakeguard_harness::report::{Entry, Report, decision_fields};

use super::{
    CliError, HostArgs, ModuleArgs, TrafficArgs, harness_config, read_module, read_traffic,
    resolve_policy,
};

/// Arguments of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The module.
    #[command(flatten)]
    pub module: ModuleArgs,
    /// The old policy, then the new one (files, or the policy JSON itself); give it twice.
    #[arg(long, value_name = "FILE_OR_RAW_STRING", num_args = 1, required = true)]
    pub policy: Vec<String>,
    /// Host options.
    #[command(flatten)]
    pub host: HostArgs,
    /// Traffic.
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// One changed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Group: the decision's api and control (new, else old), or `(no decision)`.
    pub group: String,
    /// The request line.
    pub request: String,
    /// Before.
    pub old: String,
    /// After.
    pub new: String,
}

fn fate(e: &Entry) -> String {
    let decision = e
        .decision_label()
        .map(|d| format!(" [{d}]"))
        .unwrap_or_default();
    format!("{} {}{}", e.outcome.name(), e.status, decision)
}

fn group(e: &Entry) -> Option<String> {
    let fields = decision_fields(e.decision.as_ref()?);
    let parts: Vec<&str> = ["api", "control"]
        .iter()
        .filter_map(|k| fields.get(*k).map(String::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The requests whose fate differs between two reports of the same traffic.
pub fn changes(old: &Report, new: &Report) -> Vec<Change> {
    let mut out = Vec::new();
    for (a, b) in old.entries.iter().zip(&new.entries) {
        let (fa, fb) = (fate(a), fate(b));
        if fa != fb {
            out.push(Change {
                group: group(b)
                    .or_else(|| group(a))
                    .unwrap_or_else(|| "(no decision)".to_string()),
                request: format!("#{} {} {}{}", a.index, a.method, a.authority, a.path),
                old: fa,
                new: fb,
            });
        }
    }
    out
}

/// Runs `diff`.
pub fn run(args: DiffArgs) -> Result<ExitCode, CliError> {
    let [old, new] = args.policy.as_slice() else {
        return Err(CliError::Usage(
            "give --policy exactly twice: the old policy, then the new one".to_string(),
        ));
    };
    let module = read_module(&args.module)?;
    let records = read_traffic(&args.traffic)?;
    let base = Harness::new(&module, harness_config(&args.host, resolve_policy(old)?)?)?;
    // Prepared once for both replays (the two harnesses differ in policy only).
    let prepared = base.prepare(&records);
    let old_report = base.replay_prepared(&prepared, &mut |_| {})?;
    let new_report = base
        .with_plugin_configuration(resolve_policy(new)?)?
        .replay_prepared(&prepared, &mut |_| {})?;
    let changed = changes(&old_report, &new_report);
    let mut groups: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in &changed {
        groups.entry(&c.group).or_default().push(c);
    }
    for (g, list) in &groups {
        println!("{g}: {} request(s) changed", list.len());
        for c in list {
            println!("  {}\n    old: {}\n    new: {}", c.request, c.old, c.new);
        }
    }
    println!("{} of {} requests changed", changed.len(), records.len());
    Ok(ExitCode::SUCCESS)
}

//! `status`: backlog, retries, failures and trigger drift, as text or JSON.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use trigpoll::install::{drift, Drift};
use trigpoll::store::StoreStatus;

use super::{open_installed_store, print, Context};

#[derive(Args)]
pub struct StatusArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    backend: &'static str,
    #[serde(flatten)]
    store: StoreStatus,
    triggers: Vec<Drift>,
}

pub fn run(ctx: &Context, args: StatusArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = open_installed_store(&config)?;
    let report = Report {
        backend: store.backend(),
        store: store.status()?,
        triggers: drift(store.as_mut(), &config)?,
    };
    if args.json {
        print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        print(&text(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn text(r: &Report) -> String {
    let s = &r.store;
    let mut out = String::new();
    let ready: u64 = s.backlog.iter().map(|b| b.ready).sum();
    out.push_str(&format!("backend      {}\n", r.backend));
    out.push_str(&format!(
        "ready        {ready}{}\n",
        s.oldest_ready_age_seconds
            .map(|a| format!(" (oldest {:.1}s)", a))
            .unwrap_or_default()
    ));
    out.push_str(&format!("in progress  {}\n", s.in_progress));
    out.push_str(&format!("retrying     {}\n", s.retrying));
    out.push_str(&format!(
        "archived     {} failed, {} error, {} not found\n",
        s.archived_failed, s.archived_error, s.archived_not_found
    ));
    if !s.backlog.is_empty() {
        out.push_str("\nPRIORITY  OBJECT               VERB        READY\n");
        for b in &s.backlog {
            out.push_str(&format!(
                "{:<9} {:<20} {:<11} {}\n",
                b.priority, b.object, b.verb, b.ready
            ));
        }
    }
    if !r.triggers.is_empty() {
        out.push_str("\nOBJECT               TABLE                          TRIGGER\n");
        for t in &r.triggers {
            out.push_str(&format!("{:<20} {:<30} {}\n", t.object, t.table, t.state));
        }
    }
    out
}

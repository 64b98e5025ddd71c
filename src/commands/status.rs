//! `status`: backlog, retries, failures and trigger drift, as text or JSON.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use trigpoll::install::{drift, layout, Drift, Layout};
use trigpoll::store::StoreStatus;

use super::{open_store, print, usable, Context, UsageError};

#[derive(Args)]
pub struct StatusArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    backend: &'static str,
    /// Whether the event and archive tables exist; the figures below are there only if so.
    tables_installed: bool,
    #[serde(flatten)]
    store: Option<StoreStatus>,
    triggers: Vec<Drift>,
}

/// Exit 1 when a capture trigger makes the application's writes fail: that is an outage of the
/// application, not of trigpoll, and monitoring should page on it.
pub fn run(ctx: &Context, args: StatusArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = open_store(&config)?;
    let layout = layout(store.as_mut(), &config)?;
    let triggers = drift(store.as_mut(), &config)?;
    let broken = triggers.iter().any(|t| t.state.is_broken());
    let usable = usable(layout, &config, store.backend());
    if let (Err(e), false) = (&usable, broken) {
        return Err(UsageError(e.0.clone()).into());
    }
    let report = Report {
        backend: store.backend(),
        tables_installed: layout != Layout::Missing,
        store: match usable {
            Ok(()) => Some(store.status()?),
            Err(_) => None,
        },
        triggers,
    };
    if args.json {
        print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        print(&text(&report))?;
    }
    if broken {
        tracing::error!(
            "capture triggers make the application's writes fail; see the TRIGGER column"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn text(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!("backend      {}\n", r.backend));
    if let Some(s) = &r.store {
        store_text(&mut out, s);
    } else if !r.tables_installed {
        out.push_str("tables       missing: run install-triggers\n");
    } else {
        out.push_str("tables       made by an earlier trigpoll: run install-triggers\n");
    }
    if !r.triggers.is_empty() {
        out.push_str("\nOBJECT               TABLE                          TRIGGER\n");
        for t in &r.triggers {
            out.push_str(&format!("{:<20} {:<30} {}\n", t.object, t.table, t.state));
        }
        // Whose rights the capture (and every `when` condition) runs with.
        let mut owners: Vec<&str> = r
            .triggers
            .iter()
            .filter_map(|t| t.runs_as.as_deref())
            .collect();
        owners.sort_unstable();
        owners.dedup();
        if !owners.is_empty() {
            out.push_str(&format!("\ncapture runs as  {}\n", owners.join(", ")));
        }
    }
    out
}

fn store_text(out: &mut String, s: &StoreStatus) {
    let ready: u64 = s.backlog.iter().map(|b| b.ready).sum();
    out.push_str(&format!(
        "ready        {ready}{}\n",
        s.oldest_ready_age_seconds
            .map(|a| format!(" (oldest {:.1}s)", a))
            .unwrap_or_default()
    ));
    out.push_str(&format!("in progress  {}\n", s.in_progress));
    out.push_str(&format!("retrying     {}\n", s.retrying));
    out.push_str(&format!(
        "held         {} (behind an earlier event of their key that waits for its retry)\n",
        s.held
    ));
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
}

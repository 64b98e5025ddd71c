//! `install-triggers` and `uninstall-triggers`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tracing::{info, warn};
use trigpoll::config::{Config, TableName};
use trigpoll::dialect::Dialect;
use trigpoll::install::{
    layout, own_table_names, plan_install, plan_uninstall, plan_uninstall_unconfigured, Layout,
    Plan,
};
use trigpoll::store::EventStore;

use super::{counted, open_store, print, Context, UsageError};

#[derive(Args)]
pub struct InstallArgs {
    /// Print the SQL that would run and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only this object (repeatable).
    #[arg(long = "object", value_name = "NAME")]
    objects: Vec<String>,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Print the SQL that would run and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also drop the event and archive tables, with their rows.
    #[arg(long, conflicts_with = "unconfigured")]
    drop_tables: bool,
    /// With --drop-tables: drop the event table even when it holds events not yet delivered.
    #[arg(long, requires = "drop_tables")]
    force: bool,
    /// Only the triggers of tables no configured object captures (`status`: "not in the
    /// configuration"); the configured ones keep capturing.
    #[arg(long)]
    unconfigured: bool,
}

pub fn install(ctx: &Context, args: InstallArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = open_store(&config)?;
    let plan = plan_install(store.as_mut(), &config, &args.objects)?;
    for warning in &plan.warnings {
        warn!("{warning}");
    }
    if !plan.unchanged.is_empty() {
        info!(objects = %plan.unchanged.join(", "), "triggers already up to date");
    }
    apply(store.as_mut(), &config, plan, args.dry_run)
}

pub fn uninstall(ctx: &Context, args: UninstallArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = open_store(&config)?;
    let plan = match args.unconfigured {
        true => plan_uninstall_unconfigured(store.as_mut(), &config)?,
        false => plan_uninstall(store.as_mut(), &config, args.drop_tables)?,
    };
    if args.drop_tables {
        let pending = Pending::count(store.as_mut(), &config)?;
        if args.dry_run {
            print(&format!("-- {pending}\n"))?;
        } else if pending.is_lost() && !args.force {
            return Err(UsageError(format!(
                "uninstall-triggers --drop-tables refused, nothing was changed: {pending}; {}, \
                 or add --force to drop them",
                pending.remedy()
            ))
            .into());
        } else if pending.is_lost() {
            warn!("dropping the tables: {pending}");
        }
    }
    apply(store.as_mut(), &config, plan, args.dry_run)
}

/// What the event table holds that `--drop-tables` would drop with it: the events not yet
/// delivered.
enum Pending {
    NoTable,
    Counted {
        table: String,
        /// Waiting to be claimed, also those waiting for a retry or behind one.
        ready: u64,
        /// Of `ready`: waiting for a retry, or held behind an event that does.
        waiting: u64,
        in_progress: u64,
    },
    /// Made by an earlier trigpoll, or without its archive table: the counts need both.
    Uncounted {
        table: String,
    },
}

impl Pending {
    fn count(store: &mut dyn EventStore, config: &Config) -> Result<Pending> {
        let (table, _) = own_table_names(store.backend(), config);
        Ok(match layout(store, config)? {
            Layout::Current => {
                let status = store.status()?;
                let waiting = store.retry_backlog()?.events;
                Pending::Counted {
                    table,
                    ready: status.backlog.iter().map(|b| b.ready).sum::<u64>() + waiting,
                    waiting,
                    in_progress: status.in_progress,
                }
            }
            Layout::Old => Pending::Uncounted { table },
            Layout::Missing => {
                let name = TableName {
                    schema: Some(config.database.schema.clone()),
                    name: config.database.event_table.clone(),
                };
                match store.describe_table(&name)? {
                    Some(_) => Pending::Uncounted { table },
                    None => Pending::NoTable,
                }
            }
        })
    }

    /// Whether dropping the event table may lose events.
    fn is_lost(&self) -> bool {
        match self {
            Pending::NoTable => false,
            Pending::Counted {
                ready, in_progress, ..
            } => ready + in_progress > 0,
            Pending::Uncounted { .. } => true,
        }
    }

    fn remedy(&self) -> &'static str {
        match self {
            Pending::Uncounted { .. } => {
                "run `trigpoll install-triggers` to bring the tables up to date and count them"
            }
            _ => "deliver them first (`trigpoll drain`)",
        }
    }
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::NoTable => f.write_str("there is no event table to drop"),
            Pending::Counted {
                table,
                ready,
                waiting,
                in_progress,
            } => {
                write!(
                    f,
                    "the event table {table} holds {}",
                    counted(*ready, "ready event", "ready events")
                )?;
                if *waiting > 0 {
                    write!(f, " ({waiting} of them waiting for a retry)")?;
                }
                write!(f, " and {in_progress} in progress")
            }
            Pending::Uncounted { table } => write!(
                f,
                "the events of the event table {table} cannot be counted (it was made by an \
                 earlier trigpoll, or the archive table is missing)"
            ),
        }
    }
}

fn apply(
    store: &mut dyn trigpoll::store::EventStore,
    config: &Config,
    plan: Plan,
    dry_run: bool,
) -> Result<ExitCode> {
    if plan.statements.is_empty() {
        info!("nothing to change");
        return Ok(ExitCode::SUCCESS);
    }
    if dry_run {
        let mut text = String::new();
        for step in &plan.steps {
            text.push_str(&format!("-- {step}\n"));
        }
        text.push_str(&Dialect::new(store.backend(), config).script(&plan.statements));
        print(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    store.execute_ddl(&plan.statements)?;
    for step in &plan.steps {
        info!("done: {step}");
    }
    Ok(ExitCode::SUCCESS)
}

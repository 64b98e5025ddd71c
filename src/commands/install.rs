//! `install-triggers` and `uninstall-triggers`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tracing::info;
use trigpoll::config::Config;
use trigpoll::dialect::Dialect;
use trigpoll::install::{plan_install, plan_uninstall, plan_uninstall_unconfigured, Plan};

use super::{open_store, print, Context};

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
    /// Only the triggers of tables no configured object captures (`status`: "not in the
    /// configuration"); the configured ones keep capturing.
    #[arg(long)]
    unconfigured: bool,
}

pub fn install(ctx: &Context, args: InstallArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = open_store(&config)?;
    let plan = plan_install(store.as_mut(), &config, &args.objects)?;
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
    apply(store.as_mut(), &config, plan, args.dry_run)
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

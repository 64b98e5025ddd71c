//! `check`: validate the configuration without changing anything; with `--database`, also
//! what the configuration needs from the world: the database, trigpoll's tables, the capture
//! triggers and the connectors' receivers.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use trigpoll::config::{
    ChildConfig, Config, ConnectorConfig, ObjectConfig, Rule, SinkConfig, Verb,
};
use trigpoll::connector::probe::{probe, Reach};
use trigpoll::connector::NatsSink;
use trigpoll::install::{drift, layout, own_table_names, Layout};

use super::{open_store, print, Context};

/// How long a connector's receiver may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct CheckArgs {
    /// Also connect: report missing tables, trigger drift and unreachable connectors (exit 1
    /// when any).
    #[arg(long)]
    database: bool,
}

pub fn run(ctx: &Context, args: CheckArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut out = format!(
        "configuration  ok: {} ({}, {})\n",
        config.path.display(),
        super::counted(config.objects.len() as u64, "object", "objects"),
        super::counted(config.connectors.len() as u64, "connector", "connectors")
    );
    for warning in subscription_warnings(&config) {
        out += &format!("subscription   warning: {warning}\n");
    }
    if !args.database {
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut problems = 0;
    let mut store = open_store(&config)?;
    out += &format!("database       reachable ({})\n", store.backend());
    let (events, archive) = own_table_names(store.backend(), &config);
    match layout(store.as_mut(), &config)? {
        Layout::Current => out += &format!("tables         ok: {events}, {archive}\n"),
        Layout::Missing => {
            problems += 1;
            out += &format!(
                "tables         missing: {events} or {archive} does not exist; run install-triggers\n"
            );
        }
        Layout::Old => {
            problems += 1;
            out += &format!(
                "tables         {events} was made by an earlier trigpoll; run install-triggers\n"
            );
        }
    }
    for warning in condition_warnings(store.as_mut(), &config)? {
        out += &format!("condition      warning: {warning}\n");
    }
    for d in drift(store.as_mut(), &config)? {
        if d.state.needs_attention() {
            problems += 1;
        }
        let object = if d.object.is_empty() {
            "(none)"
        } else {
            &d.object
        };
        out += &format!("trigger        {object} on {}: {}\n", d.table, d.state);
    }
    for c in &config.connectors {
        match probe(&c.sink, CONNECT_TIMEOUT) {
            Reach::Ok(what) => {
                out += &format!("connector      {}: ok, {what}\n", c.id);
                if let Some(warning) = stream_warning(c) {
                    out += &format!("connector      {}: warning: {warning}\n", c.id);
                }
            }
            Reach::Unreachable(why) => {
                problems += 1;
                out += &format!("connector      {}: UNREACHABLE: {why}\n", c.id);
            }
        }
    }
    print(&out)?;
    if problems > 0 {
        tracing::error!(problems, "check found problems");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Conditions that call functions a role other than the capture role may replace (README,
/// *Backends and privileges*): that role may then run code with the capture's rights.
fn condition_warnings(
    store: &mut dyn trigpoll::store::EventStore,
    config: &trigpoll::config::Config,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for object in &config.objects {
        let Some(name) = &object.table else { continue };
        let Some(table) = store.describe_table(name)? else {
            continue;
        };
        for verb in Verb::ALL {
            let Some(condition) = object.when.get(verb) else {
                continue;
            };
            for (function, owner) in store.replaceable_functions(&table, verb, condition)? {
                warnings.push(format!(
                    "object {}: when.{} calls {function}, which {owner} may replace: the condition runs with the capture role's rights, and so would {owner}'s code",
                    object.name,
                    verb.as_str().to_ascii_lowercase()
                ));
            }
        }
    }
    Ok(warnings)
}

/// Subscriptions that can never match what the configuration captures: a pattern naming an
/// object no `[[object]]` has, or a verb that no trigger of the object (`*`: of any object) makes,
/// neither for a row action nor by a rule; a verb differing only in case says so. A pattern an
/// outbox object may match is left alone: applications write its events with verbs of their own.
fn subscription_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let outbox = config.objects.iter().any(|o| o.table.is_none());
    for c in &config.connectors {
        for s in &c.subscribe {
            let object = s
                .object()
                .map(|name| config.objects.iter().find(|o| o.name == name));
            if matches!(object, Some(None)) {
                warnings.push(format!(
                    "connector {}: \"{s}\" names no configured object; it never matches",
                    c.id
                ));
                continue;
            }
            let Some(verb) = s.verb() else { continue };
            let (made, open) = match object.flatten() {
                Some(o) if o.table.is_none() => continue,
                Some(o) => (trigger_verbs(o), false),
                None => (
                    config.objects.iter().flat_map(trigger_verbs).collect(),
                    outbox,
                ),
            };
            if made.contains(verb) {
                continue;
            }
            if let Some(meant) = made.iter().find(|v| v.eq_ignore_ascii_case(verb)) {
                warnings.push(format!(
                    "connector {}: \"{s}\" never matches the triggers' verb {meant} (verbs are case-sensitive)",
                    c.id
                ));
            } else if !open {
                let whose = match s.object() {
                    Some(name) => format!("of {name}"),
                    None => "of any object".to_string(),
                };
                warnings.push(format!(
                    "connector {}: \"{s}\": no trigger {whose} makes verb {verb}, by a row action or a rule ({}); only events applications write would match",
                    c.id,
                    made.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    warnings
}

/// The verbs the triggers of an object bound to a table make: its row actions' own, and those
/// its rules and its children's give, where a change can reach them.
fn trigger_verbs(object: &ObjectConfig) -> BTreeSet<String> {
    let mut verbs = BTreeSet::new();
    let Some(_) = object.table else {
        return verbs;
    };
    for &verb in &object.verbs {
        match verb {
            Verb::Truncate => {
                verbs.insert(verb.as_str().to_string());
            }
            _ => verbs.extend(reached(&object.rules, verb, verb.as_str())),
        }
    }
    // A key change is the Delete of the old key and the Create of the new one.
    if object.verbs.contains(&Verb::Update) {
        for verb in [Verb::Delete, Verb::Create] {
            verbs.extend(reached(&object.rules, verb, verb.as_str()));
        }
    }
    fn children(list: &[ChildConfig], verbs: &mut BTreeSet<String>) {
        for child in list {
            for action in Verb::ALL {
                verbs.extend(reached(&child.rules, action, Verb::Update.as_str()));
            }
            children(&child.children, verbs);
        }
    }
    children(&object.children, &mut verbs);
    verbs
}

/// The verbs a change of `action` can get from `rules`, `default` when none decides.
fn reached(rules: &[Rule], action: Verb, default: &str) -> Vec<String> {
    let mut verbs = Vec::new();
    for rule in rules.iter().filter(|r| r.applies_to(action)) {
        if !rule.skip {
            verbs.push(rule.verb.clone().unwrap_or_else(|| default.to_string()));
        }
        if rule.when.is_none() {
            return verbs;
        }
    }
    verbs.push(default.to_string());
    verbs
}

/// What a reachable connector's broker holds that works against it, for a warning (not a
/// problem: deliveries work). Only NATS has such a thing: a stream whose duplicate window is
/// shorter than the connector's.
fn stream_warning(connector: &ConnectorConfig) -> Option<String> {
    let SinkConfig::Nats(config) = &connector.sink else {
        return None;
    };
    match NatsSink::from_config(&connector.id, config) {
        Ok(mut sink) => sink.stream_warning().unwrap_or_else(Some),
        Err(e) => Some(e.to_string()),
    }
}

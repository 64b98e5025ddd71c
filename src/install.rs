//! Planning `install-triggers` and `uninstall-triggers`: every check is made before any
//! statement runs, so a refused install leaves nothing half-done.

use std::collections::{HashMap, HashSet};

use crate::config::{Config, ObjectConfig, Rule, TableName, Verb};
use crate::dialect::{Capture, Dialect};
use crate::store::{EventStore, StoreError};
use crate::table::{InstalledTrigger, TableInfo};

/// What an install or uninstall will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The SQL to run, in order.
    pub statements: Vec<String>,
    /// One line per step, for people.
    pub steps: Vec<String>,
    /// Objects whose triggers are already as configured.
    pub unchanged: Vec<String>,
    /// What the plan does not change but someone should know (events of objects no longer
    /// configured).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The configuration does not fit the database; every problem is listed.
    #[error("install refused, nothing was changed:\n  - {}", .0.join("\n  - "))]
    Refused(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn selected<'a>(
    config: &'a Config,
    only: &[String],
) -> Result<Vec<&'a ObjectConfig>, InstallError> {
    let unknown: Vec<String> = only
        .iter()
        .filter(|name| !config.objects.iter().any(|o| &o.name == *name))
        .map(|name| format!("--object {name}: no [[object]] has this name"))
        .collect();
    if !unknown.is_empty() {
        return Err(InstallError::Refused(unknown));
    }
    Ok(config
        .objects
        .iter()
        .filter(|o| only.is_empty() || only.contains(&o.name))
        .collect())
}

/// trigpoll's own event and archive tables.
fn own_tables(config: &Config) -> (TableName, TableName) {
    let db = &config.database;
    let table = |name: &str| TableName {
        schema: Some(db.schema.clone()),
        name: name.to_string(),
    };
    (table(&db.event_table), table(&db.archive_table))
}

/// The event and archive tables as the backend names them, for messages: SQLite has no schemas,
/// so there they are bare table names.
pub fn own_table_names(backend: &str, config: &Config) -> (String, String) {
    let db = &config.database;
    match backend {
        "sqlite" => (db.event_table.clone(), db.archive_table.clone()),
        _ => {
            let (events, archive) = own_tables(config);
            (events.to_string(), archive.to_string())
        }
    }
}

/// Whether the event and archive tables exist.
pub fn tables_installed(store: &mut dyn EventStore, config: &Config) -> Result<bool, StoreError> {
    Ok(layout(store, config)? != Layout::Missing)
}

/// What trigpoll's own tables look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The event or the archive table does not exist.
    Missing,
    /// Made by an earlier trigpoll: `install-triggers` brings them up to date, events and all.
    Old,
    Current,
}

pub fn layout(store: &mut dyn EventStore, config: &Config) -> Result<Layout, StoreError> {
    Ok(match upgrade(store, config)? {
        None => Layout::Missing,
        Some(upgrade) if upgrade.is_empty() => Layout::Current,
        Some(_) => Layout::Old,
    })
}

/// What trigpoll's own tables lack of the current layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Upgrade {
    /// The event table has no `waiting_for` (trigpoll 0.1), nor its indexes.
    waiting_for: bool,
    /// Of [`crate::dialect::ADDED_COLUMNS`], those the event table lacks.
    event_columns: Vec<&'static str>,
    /// And those the archive table lacks.
    archive_columns: Vec<&'static str>,
}

impl Upgrade {
    fn is_empty(&self) -> bool {
        *self == Upgrade::default()
    }
}

/// What the event and archive tables lack; `None` when either does not exist.
fn upgrade(store: &mut dyn EventStore, config: &Config) -> Result<Option<Upgrade>, StoreError> {
    let (events, archive) = own_tables(config);
    let Some(event_table) = store.describe_table(&events)? else {
        return Ok(None);
    };
    let Some(archive_table) = store.describe_table(&archive)? else {
        return Ok(None);
    };
    let lacking = |table: &TableInfo| -> Vec<&'static str> {
        crate::dialect::ADDED_COLUMNS
            .into_iter()
            .filter(|c| table.column(c).is_none())
            .collect()
    };
    Ok(Some(Upgrade {
        waiting_for: event_table.column("waiting_for").is_none(),
        event_columns: lacking(&event_table),
        archive_columns: lacking(&archive_table),
    }))
}

/// Describes every table the objects use (their own and their children's), each once.
pub fn describe_all<'a>(
    store: &mut dyn EventStore,
    objects: impl IntoIterator<Item = &'a ObjectConfig>,
) -> Result<HashMap<TableName, TableInfo>, StoreError> {
    let mut tables = HashMap::new();
    let mut seen = HashSet::new();
    for name in objects.into_iter().flat_map(Capture::tables) {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(info) = store.describe_table(&name)? {
            tables.insert(name, info);
        }
    }
    Ok(tables)
}

/// The captures of the objects bound to tables, and the problems of those that cannot be
/// installed: a table or column that does not exist, a `when` condition the database refuses.
fn resolve(
    store: &mut dyn EventStore,
    config: &Config,
    objects: &[&ObjectConfig],
) -> Result<(Vec<Capture>, Vec<String>), StoreError> {
    let tables = describe_all(store, objects.iter().copied())?;
    let mut captures = Vec::new();
    let mut problems = Vec::new();
    for object in objects.iter().filter(|o| o.table.is_some()) {
        match Capture::new(object, &tables, &config.poll.key_delimiter) {
            Ok(capture) => captures.push(capture),
            Err(found) => problems.extend(found),
        }
    }
    for capture in &captures {
        let object = format!("object {}", capture.object.name);
        for verb in Verb::ALL {
            let Some(condition) = capture.object.when.get(verb) else {
                continue;
            };
            if let Some(reason) = store.check_condition(&capture.table, verb, condition)? {
                problems.push(format!(
                    "{object}: when.{}: the database refuses the condition: {reason}",
                    verb.action()
                ));
            }
        }
        let rules = &capture.object.rules;
        problems.extend(check_rules(store, &capture.table, rules, &object, false)?);
        for chain in capture.descendants() {
            let child = chain.last().expect("a child has a chain");
            let who = format!("{object}, child {}", child.path);
            let rules = &child.config.rules;
            problems.extend(check_rules(store, &child.table, rules, &who, true)?);
        }
    }
    Ok((captures, problems))
}

/// The conditions of `rules` on `table` that the database refuses, each named by `who`, the
/// rule, the action it is tried for and the verb it gives. A `child` table's rules give its
/// parent's event, an Update unless they say otherwise.
fn check_rules(
    store: &mut dyn EventStore,
    table: &TableInfo,
    rules: &[Rule],
    who: &str,
    child: bool,
) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(condition) = &rule.when else {
            continue;
        };
        for &action in &rule.on {
            if let Some(reason) = store.check_condition(table, action, condition)? {
                let makes = match (&rule.verb, rule.skip) {
                    (_, true) => "skip".to_string(),
                    (Some(verb), false) => format!("verb {verb}"),
                    (None, false) if child => format!("verb {}", Verb::Update.as_str()),
                    (None, false) => format!("verb {}", action.as_str()),
                };
                problems.push(format!(
                    "{who}: rule[{i}].when (on {}, {makes}): the database refuses the condition: {reason}",
                    action.action()
                ));
            }
        }
    }
    Ok(problems)
}

pub fn plan_install(
    store: &mut dyn EventStore,
    config: &Config,
    only: &[String],
) -> Result<Plan, InstallError> {
    let dialect = Dialect::new(store.backend(), config);
    let objects = selected(config, only)?;
    let (captures, mut problems) = resolve(store, config, &objects)?;
    problems.extend(hidden(store, objects.iter().copied())?);
    if !problems.is_empty() {
        return Err(InstallError::Refused(problems));
    }
    let installed = store.installed_triggers()?;
    let mut plan = Plan::default();
    let (event_table, archive_table) = own_table_names(store.backend(), config);
    match upgrade(store, config)? {
        None => {
            plan.steps.push(format!(
                "create the event table {event_table} and the archive table {archive_table}"
            ));
            plan.statements.extend(dialect.create_tables());
        }
        Some(upgrade) if upgrade.is_empty() => {
            for (step, statements) in store.table_upgrades()? {
                plan.steps.push(step);
                plan.statements.extend(statements);
            }
        }
        Some(upgrade) => {
            if upgrade.waiting_for {
                plan.steps.push(format!(
                    "upgrade the event table {event_table}: add waiting_for and its indexes (its events stay)"
                ));
                plan.statements.extend(dialect.upgrade_tables());
            }
            for (archive, table, columns) in [
                (false, &event_table, &upgrade.event_columns),
                (true, &archive_table, &upgrade.archive_columns),
            ] {
                if columns.is_empty() {
                    continue;
                }
                plan.steps.push(format!(
                    "upgrade the {} table {table}: add {} (its rows stay)",
                    if archive { "archive" } else { "event" },
                    columns.join(" and ")
                ));
                plan.statements
                    .extend(dialect.add_columns(archive, columns));
            }
        }
    }
    let mut support = dialect.support_functions(&config.poll.key_delimiter);
    for capture in &captures {
        let mut changed = false;
        for ddl in dialect.capture(capture) {
            let current = installed.iter().find(|t| same_table(t, &ddl.table));
            // A trigger that fails the application's writes is replaced even when its text is
            // current: on MySQL that gives it the installing user as its definer.
            let healthy = current.filter(|t| t.failure.is_none());
            if healthy.and_then(|t| t.fingerprint.as_deref()) == Some(ddl.fingerprint.as_str()) {
                continue;
            }
            changed = true;
            let what = if ddl.table == capture.table.name {
                let verbs: Vec<&str> = capture.object.verbs.iter().map(|v| v.as_str()).collect();
                format!(
                    "the trigger of {} ({})",
                    capture.object.name,
                    verbs.join(", ")
                )
            } else {
                format!("the child trigger of {}", capture.object.name)
            };
            plan.steps.push(format!(
                "{} {what} on {}",
                if current.is_some() {
                    "replace"
                } else {
                    "install"
                },
                ddl.table
            ));
            plan.statements.append(&mut support);
            // The routine of an object renamed or replaced on this table runs no trigger now.
            let replaced = current
                .and_then(|t| t.routine.as_deref())
                .filter(|old| !ddl.statements_mention(old))
                .map(|old| dialect.drop_routine(old))
                .unwrap_or_default();
            plan.statements.extend(ddl.statements);
            plan.statements.extend(replaced);
        }
        if !changed {
            plan.unchanged.push(capture.object.name.clone());
        }
    }
    plan.warnings = unconfigured_events(store, config)?;
    Ok(plan)
}

/// The ready events of objects no `[[object]]` has any more, by object: the next batch archives
/// each as `error` (unknown object).
fn unconfigured_events(
    store: &mut dyn EventStore,
    config: &Config,
) -> Result<Vec<String>, StoreError> {
    if layout(store, config)? != Layout::Current {
        return Ok(Vec::new());
    }
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for row in store.status()?.backlog {
        if !config.objects.iter().any(|o| o.name == row.object) {
            *counts.entry(row.object).or_default() += row.ready;
        }
    }
    Ok(counts
        .into_iter()
        .map(|(object, events)| {
            let (s, them) = if events == 1 {
                ("", "it")
            } else {
                ("s", "them")
            };
            format!(
                "{events} ready event{s} of object {object:?}, which is no longer configured: \
                 the next poll or drain archives {them} as error (unknown object); configure \
                 the object again to deliver {them}, or replay {them} once it is"
            )
        })
        .collect())
}

/// The tables of `objects` whose triggers this account cannot see, as problems: it can neither
/// tell what is installed there nor change it.
fn hidden<'a>(
    store: &mut dyn EventStore,
    objects: impl IntoIterator<Item = &'a ObjectConfig>,
) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for table in objects.into_iter().flat_map(Capture::tables) {
        if !seen.insert(table.clone()) {
            continue;
        }
        if let Some(reason) = store.triggers_hidden(&table)? {
            problems.push(format!(
                "this account cannot see the triggers of {table}: {reason}; run it as the account that installs the triggers"
            ));
        }
    }
    Ok(problems)
}

/// A trigger's table as found in the catalog against a configured table name, which may leave
/// the schema to the search path.
fn same_table(trigger: &InstalledTrigger, table: &TableName) -> bool {
    trigger.table.name == table.name
        && (table.schema.is_none() || trigger.table.schema == table.schema)
}

pub fn plan_uninstall(
    store: &mut dyn EventStore,
    config: &Config,
    drop_tables: bool,
) -> Result<Plan, InstallError> {
    let hidden = hidden(store, &config.objects)?;
    if !hidden.is_empty() {
        return Err(InstallError::Refused(hidden));
    }
    let installed = store.installed_triggers()?;
    let mut plan = drop_triggers(store, config, installed);
    drop_leftovers(store, config, &mut plan)?;
    if drop_tables {
        let dialect = Dialect::new(store.backend(), config);
        let (event_table, archive_table) = own_table_names(store.backend(), config);
        plan.steps.push(format!(
            "drop the tables {event_table} and {archive_table} with every event and archive row"
        ));
        plan.statements.extend(dialect.drop_tables());
        let rest = store.drop_own_schema()?;
        if !rest.is_empty() {
            plan.steps.push(format!(
                "drop trigpoll's functions, and its {} when nothing else is left in it",
                match store.backend() {
                    "mysql" => "database",
                    _ => "schema",
                }
            ));
            plan.statements.extend(rest);
        }
    }
    Ok(plan)
}

/// Removes the capture routines no trigger runs any more (left by an object renamed or
/// removed while its table stayed captured).
fn drop_leftovers(
    store: &mut dyn EventStore,
    config: &Config,
    plan: &mut Plan,
) -> Result<(), StoreError> {
    let dialect = Dialect::new(store.backend(), config);
    for routine in store.leftover_routines()? {
        plan.steps
            .push(format!("remove the leftover capture function {routine}"));
        plan.statements.extend(dialect.drop_routine(&routine));
    }
    Ok(())
}

/// Removes only the triggers of tables that no configured object captures, as [`drift`]
/// reports them: what is left after an object was taken out of the configuration.
pub fn plan_uninstall_unconfigured(
    store: &mut dyn EventStore,
    config: &Config,
) -> Result<Plan, InstallError> {
    let hidden = hidden(store, &config.objects)?;
    if !hidden.is_empty() {
        return Err(InstallError::Refused(hidden));
    }
    let (_, unowned) = compare(store, config)?;
    let mut plan = drop_triggers(store, config, unowned);
    drop_leftovers(store, config, &mut plan)?;
    Ok(plan)
}

fn drop_triggers(store: &dyn EventStore, config: &Config, triggers: Vec<InstalledTrigger>) -> Plan {
    let dialect = Dialect::new(store.backend(), config);
    let mut plan = Plan::default();
    for trigger in triggers {
        plan.steps.push(format!(
            "remove the trigger {} on {}",
            trigger.name, trigger.table
        ));
        plan.statements.extend(dialect.drop_capture(&trigger));
    }
    plan
}

/// How an object's installed trigger compares with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// The object, or empty for a trigger no configured object owns.
    pub object: String,
    pub table: String,
    pub state: DriftState,
    /// Whose rights the installed capture runs with ([`InstalledTrigger::runs_as`]).
    pub runs_as: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftState {
    UpToDate,
    Missing,
    /// Installed, but not what the configuration generates now: run install-triggers.
    Stale,
    /// Installed for other columns than the table has now (added, dropped, retyped): run
    /// install-triggers.
    TableChanged,
    /// Installed for a table no configured object binds.
    Unconfigured,
    /// The configuration does not fit the database.
    Invalid(String),
    /// Installed, and every write the application makes to the table fails because of it.
    Broken(String),
    /// A capture routine that no trigger runs any more (`table` names the routine).
    Leftover,
    /// This account cannot see the table's triggers (MySQL shows them only to accounts with
    /// the TRIGGER privilege on the table): nothing can be said of them.
    NotVisible(String),
}

impl DriftState {
    pub fn is_broken(&self) -> bool {
        matches!(self, DriftState::Broken(_))
    }

    /// Whether someone should act: anything but up to date, or triggers this account cannot
    /// see (a poller's account has no use for seeing them).
    pub fn needs_attention(&self) -> bool {
        !matches!(self, DriftState::UpToDate | DriftState::NotVisible(_))
    }
}

impl std::fmt::Display for DriftState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriftState::UpToDate => f.write_str("up to date"),
            DriftState::Missing => f.write_str("missing: run install-triggers"),
            DriftState::Stale => {
                f.write_str("stale: differs from the configuration, run install-triggers")
            }
            DriftState::TableChanged => f.write_str(
                "stale: the table's columns changed since install-triggers, run install-triggers",
            ),
            DriftState::Unconfigured => {
                f.write_str("not in the configuration: run uninstall-triggers --unconfigured")
            }
            DriftState::Invalid(reason) => write!(f, "invalid: {reason}"),
            DriftState::Leftover => f.write_str(
                "a capture function no trigger runs (left by a renamed or removed object): run uninstall-triggers --unconfigured",
            ),
            DriftState::NotVisible(reason) => write!(
                f,
                "not visible to this account ({reason}); run `trigpoll status` as the installing account to compare them"
            ),
            DriftState::Broken(reason) => write!(
                f,
                "BROKEN: the application's writes to this table fail: {reason}; \
                 fix it and run install-triggers, or run uninstall-triggers"
            ),
        }
    }
}

/// Compares the installed triggers with what the configuration would install: one entry per
/// table an object captures (its own and its children's).
pub fn drift(store: &mut dyn EventStore, config: &Config) -> Result<Vec<Drift>, InstallError> {
    let (mut report, unowned) = compare(store, config)?;
    report.extend(unowned.into_iter().map(|t| {
        Drift {
            object: String::new(),
            table: t.table.to_string(),
            state: t
                .failure
                .map_or(DriftState::Unconfigured, DriftState::Broken),
            runs_as: t.runs_as,
        }
    }));
    report.extend(store.leftover_routines()?.into_iter().map(|routine| Drift {
        object: String::new(),
        table: routine,
        state: DriftState::Leftover,
        runs_as: None,
    }));
    Ok(report)
}

/// The drift of each configured object's tables, and the installed triggers no configured
/// object owns.
fn compare(
    store: &mut dyn EventStore,
    config: &Config,
) -> Result<(Vec<Drift>, Vec<InstalledTrigger>), InstallError> {
    let dialect = Dialect::new(store.backend(), config);
    let mut installed = store.installed_triggers()?;
    let objects: Vec<&ObjectConfig> = config
        .objects
        .iter()
        .filter(|o| o.table.is_some())
        .collect();
    let tables = describe_all(store, objects.iter().copied())?;
    let mut report = Vec::new();
    for object in objects {
        let capture = match Capture::new(object, &tables, &config.poll.key_delimiter) {
            Ok(capture) => capture,
            Err(problems) => {
                // Its tables' triggers are still this object's, not ones left unowned.
                let tables = Capture::tables(object);
                installed.retain(|t| !tables.iter().any(|table| same_table(t, table)));
                report.push(Drift {
                    object: object.name.clone(),
                    table: object
                        .table
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    state: DriftState::Invalid(problems.join("; ")),
                    runs_as: None,
                });
                continue;
            }
        };
        for ddl in dialect.capture(&capture) {
            let mut runs_as = None;
            let state = match installed.iter().position(|t| same_table(t, &ddl.table)) {
                None => match store.triggers_hidden(&ddl.table)? {
                    Some(reason) => DriftState::NotVisible(reason),
                    None => DriftState::Missing,
                },
                Some(i) => {
                    let found = installed.remove(i);
                    runs_as = found.runs_as;
                    if let Some(reason) = found.failure {
                        DriftState::Broken(reason)
                    } else if found.fingerprint.as_deref() == Some(ddl.fingerprint.as_str()) {
                        DriftState::UpToDate
                    } else if found.columns.as_ref().is_some_and(|c| {
                        Some(c)
                            != crate::dialect::parse_table_note(&ddl.statements.join("\n")).as_ref()
                    }) {
                        DriftState::TableChanged
                    } else {
                        DriftState::Stale
                    }
                }
            };
            report.push(Drift {
                object: object.name.clone(),
                table: ddl.table.to_string(),
                state,
                runs_as,
            });
        }
    }
    Ok((report, installed))
}

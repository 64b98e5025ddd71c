//! `[[object]]`: validation of the objects, their capture settings and their children.

use std::collections::HashMap;

use toml::Spanned;

use super::raw::{Names, NonBlank, RawAction, RawActions, RawChild, RawObject, RawRule};
use super::source::Source;
use super::{ChildConfig, Columns, ConfigError, ObjectConfig, Rule, TableName, Verb, When};

/// A list that must not be empty nor name an item twice; `key` names it in errors.
pub(super) fn distinct<T: PartialEq>(
    source: &Source,
    list: Spanned<Vec<Spanned<T>>>,
    key: &str,
    when_empty: &str,
    describe: impl Fn(&T) -> String,
) -> Result<Vec<T>, ConfigError> {
    let span = list.span();
    let list = list.into_inner();
    if list.is_empty() {
        return Err(source.error(Some(span), Some(key.to_string()), when_empty));
    }
    let mut items: Vec<T> = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        if items.contains(item.get_ref()) {
            return Err(source.error(
                Some(item.span()),
                Some(format!("{key}[{i}]")),
                format!("{} is listed twice", describe(item.get_ref())),
            ));
        }
        items.push(item.into_inner());
    }
    Ok(items)
}

/// The backend of the database URL: some capture settings exist on some backends only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Postgres,
    Mysql,
    Sqlite,
}

pub(super) fn objects(
    source: &Source,
    raw: Vec<RawObject>,
    backend: Backend,
) -> Result<Vec<ObjectConfig>, ConfigError> {
    let sqlite = backend == Backend::Sqlite;
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut tables: HashMap<TableName, String> = HashMap::new();
    let mut objects = Vec::with_capacity(raw.len());
    for (i, object) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("object[{i}].{field}");

        let name = object.name.get_ref().0.clone();
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(source.error(
                Some(object.name.span()),
                Some(at("name")),
                format!("object {name:?} is already defined by object[{first}]"),
            ));
        }

        let Some(written) = &object.table else {
            outbox_only(source, &object, &at)?;
            objects.push(ObjectConfig::outbox(&name));
            continue;
        };
        let table = table_name(source, written, &at("table"))?;
        bind(source, &mut tables, &table, written, &at("table"))?;

        let keys = names_of(
            source,
            object.keys,
            &at("keys"),
            "must list at least one column; leave it out to use the primary key",
        )?;
        if let Some(list) = &object.verbs {
            let truncate = list
                .get_ref()
                .iter()
                .enumerate()
                .find(|(_, v)| *v.get_ref() == Verb::Truncate);
            let refused = match backend {
                Backend::Postgres => None,
                Backend::Mysql => Some("MySQL and MariaDB fire no trigger on TRUNCATE"),
                Backend::Sqlite => Some(
                    "SQLite has no TRUNCATE: its `DELETE FROM` a whole table is captured as the Delete of each row",
                ),
            };
            if let (Some((i, verb)), Some(reason)) = (truncate, refused) {
                return Err(source.error(
                    Some(verb.span()),
                    Some(format!("{}[{i}]", at("verbs"))),
                    format!("verb Truncate is captured on PostgreSQL only: {reason}"),
                ));
            }
        }
        let verbs = match object.verbs {
            None => Verb::ALL.to_vec(),
            Some(list) => distinct(
                source,
                list,
                &at("verbs"),
                "must list at least one verb; leave it out for all three",
                |verb: &Verb| format!("verb {}", verb.as_str()),
            )?,
        };
        let track = exclusive(
            source,
            (object.track, "track"),
            (object.ignore, "ignore"),
            &at,
            "an Update makes an event when one of these columns changed, or, with `ignore`, when another one did",
        )?;
        let attributes = exclusive(
            source,
            (object.attributes, "attributes"),
            (object.exclude_attributes, "exclude_attributes"),
            &at,
            "the business object carries these columns, or, with `exclude_attributes`, all others",
        )?;
        let coalesce = object.coalesce.as_ref().is_some_and(|c| *c.get_ref());
        let changes =
            match object.changes {
                Some(c) if *c.get_ref() && coalesce => return Err(source.error(
                    Some(c.span()),
                    Some(at("changes")),
                    "`changes` and `coalesce` do not go together: each Update's changes differ, \
                     and coalescing would deliver only the last of them",
                )),
                Some(c) => *c.get_ref(),
                None => false,
            };
        let ignore_users =
            match object.ignore_users {
                Some(list) if sqlite => return Err(source.error(
                    Some(list.span()),
                    Some(at("ignore_users")),
                    "SQLite has no database users: changes cannot be told apart by who made them",
                )),
                list => names_of_kind(
                    source,
                    list,
                    &at("ignore_users"),
                    "must list at least one user",
                    "user",
                )?
                .unwrap_or_default(),
            };
        let when = match object.when {
            None => When::default(),
            Some(when) => {
                let span = when.span();
                let when = when.into_inner();
                let condition = |c: Option<Spanned<NonBlank>>, verb: Verb, key: &str| match c {
                    Some(c) if !verbs.contains(&verb) => Err(source.error(
                        Some(c.span()),
                        Some(at(&format!("when.{key}"))),
                        format!(
                            "the object does not capture {} (see `verbs`)",
                            verb.as_str()
                        ),
                    )),
                    c => Ok(c.map(|c| c.into_inner().0)),
                };
                let when = When {
                    create: condition(when.create, Verb::Create, "create")?,
                    update: condition(when.update, Verb::Update, "update")?,
                    delete: condition(when.delete, Verb::Delete, "delete")?,
                };
                if when == When::default() {
                    return Err(source.error(
                        Some(span),
                        Some(at("when")),
                        "is empty: give `create`, `update` or `delete`, or leave it out",
                    ));
                }
                when
            }
        };
        let rules = rules(source, object.rule, &at("rule"), &verbs)?;
        let children = match object.child {
            None => Vec::new(),
            Some(list) => children(source, list.into_inner(), &at("child"), &mut tables)?,
        };
        objects.push(ObjectConfig {
            name,
            table: Some(table),
            keys,
            verbs,
            priority: object.priority.map_or(0, |p| p.into_inner().get()),
            coalesce,
            track,
            attributes,
            changes,
            ignore_users,
            when,
            rules,
            children,
        });
    }
    Ok(objects)
}

/// `[[object.rule]]` or `[[object.child.rule]]` (`key`), for a table whose changes of `captured`
/// actions make events.
fn rules(
    source: &Source,
    raw: Option<Spanned<Vec<Spanned<RawRule>>>>,
    key: &str,
    captured: &[Verb],
) -> Result<Vec<Rule>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut rules: Vec<Rule> = Vec::new();
    for (i, rule) in raw.into_inner().into_iter().enumerate() {
        let at = |field: &str| format!("{key}[{i}].{field}");
        let rule = rule.into_inner();
        let on_span = rule.on.span();
        let actions: Vec<Spanned<RawAction>> = match rule.on.into_inner() {
            RawActions::One(verb) => vec![Spanned::new(on_span.clone(), RawAction(verb))],
            RawActions::Many(list) => list,
        };
        let on: Vec<Verb> = distinct(
            source,
            Spanned::new(on_span.clone(), actions),
            &at("on"),
            "must name at least one row action: create, update or delete",
            |a: &RawAction| format!("action {}", a.0.action()),
        )?
        .into_iter()
        .map(|a| a.0)
        .collect();
        if let Some(action) = on.iter().find(|a| !captured.contains(a)) {
            return Err(source.error(
                Some(on_span),
                Some(at("on")),
                format!(
                    "the object does not capture {} (see `verbs`)",
                    action.as_str()
                ),
            ));
        }
        // A rule without a condition takes every change of its actions: one after it for
        // those actions only would never be tried.
        let shadowing = |action: &Verb| {
            rules
                .iter()
                .position(|r| r.when.is_none() && r.applies_to(*action))
        };
        if let Some(first) = on.iter().map(shadowing).collect::<Option<Vec<usize>>>() {
            return Err(source.error(
                Some(on_span),
                Some(at("on")),
                format!(
                    "never tried: {key}[{}] has no `when`, so it decides every change of these actions first",
                    first.iter().max().expect("a rule has an action")
                ),
            ));
        }
        let skip = rule.skip.as_ref().is_some_and(|s| *s.get_ref());
        if skip {
            let outcome = [
                ("verb", rule.verb.as_ref().map(Spanned::span)),
                ("priority", rule.priority.as_ref().map(Spanned::span)),
                ("comment", rule.comment.as_ref().map(Spanned::span)),
            ];
            if let Some((field, span)) = outcome.into_iter().find_map(|(f, s)| Some((f, s?))) {
                return Err(source.error(
                    Some(span),
                    Some(at(field)),
                    format!(
                        "a rule with `skip = true` makes no event, which would carry its `{field}`"
                    ),
                ));
            }
        }
        rules.push(Rule {
            on,
            when: rule.when.map(|w| w.into_inner().0),
            skip,
            verb: rule.verb.map(|v| v.into_inner().0),
            priority: rule.priority.map(|p| p.into_inner().get()),
            comment: rule.comment.map(|c| c.into_inner().0),
        });
    }
    Ok(rules)
}

/// An outbox object has no table: none of the settings that describe a capture apply.
fn outbox_only(
    source: &Source,
    object: &RawObject,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let spans = [
        ("keys", object.keys.as_ref().map(Spanned::span)),
        ("verbs", object.verbs.as_ref().map(Spanned::span)),
        ("priority", object.priority.as_ref().map(Spanned::span)),
        ("coalesce", object.coalesce.as_ref().map(Spanned::span)),
        ("track", object.track.as_ref().map(Spanned::span)),
        ("ignore", object.ignore.as_ref().map(Spanned::span)),
        ("attributes", object.attributes.as_ref().map(Spanned::span)),
        (
            "exclude_attributes",
            object.exclude_attributes.as_ref().map(Spanned::span),
        ),
        ("changes", object.changes.as_ref().map(Spanned::span)),
        (
            "ignore_users",
            object.ignore_users.as_ref().map(Spanned::span),
        ),
        ("when", object.when.as_ref().map(Spanned::span)),
        ("rule", object.rule.as_ref().map(Spanned::span)),
        ("child", object.child.as_ref().map(Spanned::span)),
    ];
    match spans.into_iter().find_map(|(key, span)| Some((key, span?))) {
        Some((key, span)) => Err(source.error(
            Some(span),
            Some(at(key)),
            "an outbox object (no `table`) takes no capture settings: applications write its \
             events, with their payload, into the event table",
        )),
        None => Ok(()),
    }
}

fn table_name(
    source: &Source,
    written: &Spanned<NonBlank>,
    key: &str,
) -> Result<TableName, ConfigError> {
    TableName::parse(&written.get_ref().0).ok_or_else(|| {
        source.error(
            Some(written.span()),
            Some(key.to_string()),
            format!(
                "{:?} is not of the form schema.table or table (a part may be in double quotes)",
                written.get_ref().0
            ),
        )
    })
}

/// Records that `table` is captured for `key`: a table has one set of capture triggers.
fn bind(
    source: &Source,
    tables: &mut HashMap<TableName, String>,
    table: &TableName,
    written: &Spanned<NonBlank>,
    key: &str,
) -> Result<(), ConfigError> {
    match tables.insert(table.clone(), key.to_string()) {
        Some(first) => Err(source.error(
            Some(written.span()),
            Some(key.to_string()),
            format!("table {table} is already bound by {first}"),
        )),
        None => Ok(()),
    }
}

/// An optional list of column names, not empty, without repeats.
fn names_of(
    source: &Source,
    list: Option<Names>,
    key: &str,
    when_empty: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    names_of_kind(source, list, key, when_empty, "column")
}

/// An optional list of names of `what` (columns, users), not empty, without repeats.
fn names_of_kind(
    source: &Source,
    list: Option<Names>,
    key: &str,
    when_empty: &str,
    what: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    Ok(match list {
        None => None,
        Some(list) => Some(
            distinct(source, list, key, when_empty, |n: &NonBlank| {
                format!("{what} {:?}", n.0)
            })?
            .into_iter()
            .map(|n| n.0)
            .collect(),
        ),
    })
}

/// Two settings of which at most one may be given: the first lists the chosen columns, the
/// second the columns left out.
fn exclusive(
    source: &Source,
    only: (Option<Names>, &str),
    except: (Option<Names>, &str),
    at: &dyn Fn(&str) -> String,
    meaning: &str,
) -> Result<Columns, ConfigError> {
    match (only.0, except.0) {
        (Some(_), Some(second)) => Err(source.error(
            Some(second.span()),
            Some(at(except.1)),
            format!(
                "`{}` and `{}` exclude each other: {meaning}",
                only.1, except.1
            ),
        )),
        (Some(list), None) => Ok(Columns::Only(
            names_of(
                source,
                Some(list),
                &at(only.1),
                "must list at least one column",
            )?
            .unwrap_or_default(),
        )),
        (None, Some(list)) => Ok(Columns::Except(
            names_of(
                source,
                Some(list),
                &at(except.1),
                "must list at least one column",
            )?
            .unwrap_or_default(),
        )),
        (None, None) => Ok(Columns::All),
    }
}

fn children(
    source: &Source,
    raw: Vec<RawChild>,
    key: &str,
    tables: &mut HashMap<TableName, String>,
) -> Result<Vec<ChildConfig>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    let mut result = Vec::with_capacity(raw.len());
    for (i, child) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("{key}[{i}].{field}");
        let name = child.name.get_ref().0.clone();
        if names.contains(&name) {
            return Err(source.error(
                Some(child.name.span()),
                Some(at("name")),
                format!("another child of this object is named {name:?}"),
            ));
        }
        names.push(name.clone());
        let table = table_name(source, &child.table, &at("table"))?;
        bind(source, tables, &table, &child.table, &at("table"))?;
        let parent_keys = names_of(
            source,
            Some(child.parent_keys),
            &at("parent_keys"),
            "must list the child's columns that hold its parent's key",
        )?
        .unwrap_or_default();
        let order_by = names_of(
            source,
            child.order_by,
            &at("order_by"),
            "must list at least one column; leave it out for the primary key",
        )?;
        let attributes = exclusive(
            source,
            (child.attributes, "attributes"),
            (child.exclude_attributes, "exclude_attributes"),
            &at,
            "the child rows carry these columns, or, with `exclude_attributes`, all others",
        )?;
        let rules = rules(source, child.rule, &at("rule"), &Verb::ALL)?;
        let grandchildren = match child.child {
            None => Vec::new(),
            Some(list) => children(source, list.into_inner(), &at("child"), tables)?,
        };
        result.push(ChildConfig {
            name,
            table,
            parent_keys,
            order_by,
            attributes,
            rules,
            children: grandchildren,
        });
    }
    Ok(result)
}

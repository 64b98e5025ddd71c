//! `[[object]]`: validation of the objects bound to tables.

use std::collections::HashMap;

use toml::Spanned;

use super::raw::{NonBlank, RawObject};
use super::source::Source;
use super::{ConfigError, ObjectConfig, TableName, Verb};

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

pub(super) fn objects(
    source: &Source,
    raw: Vec<RawObject>,
) -> Result<Vec<ObjectConfig>, ConfigError> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut tables: HashMap<TableName, usize> = HashMap::new();
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

        let written = &object.table.get_ref().0;
        let table = match written.split_once('.') {
            None => TableName {
                schema: None,
                name: written.clone(),
            },
            Some((schema, table)) if !schema.trim().is_empty() && !table.trim().is_empty() => {
                TableName {
                    schema: Some(schema.to_string()),
                    name: table.to_string(),
                }
            }
            Some(_) => {
                return Err(source.error(
                    Some(object.table.span()),
                    Some(at("table")),
                    format!("{written:?} is not of the form schema.table or table"),
                ))
            }
        };
        if let Some(first) = tables.insert(table.clone(), i) {
            return Err(source.error(
                Some(object.table.span()),
                Some(at("table")),
                format!("table {table} is already bound to object[{first}]"),
            ));
        }

        let keys = match object.keys {
            None => None,
            Some(list) => Some(distinct(
                source,
                list,
                &at("keys"),
                "must list at least one column; leave it out to use the primary key",
                |key: &NonBlank| format!("column {:?}", key.0),
            )?),
        }
        .map(|keys| keys.into_iter().map(|k| k.0).collect());

        let verbs = match object.verbs {
            None => vec![Verb::Create, Verb::Update, Verb::Delete],
            Some(list) => distinct(
                source,
                list,
                &at("verbs"),
                "must list at least one verb; leave it out for all three",
                |verb: &Verb| format!("verb {}", verb.as_str()),
            )?,
        };

        objects.push(ObjectConfig {
            name,
            table,
            keys,
            verbs,
            priority: object.priority.get(),
            coalesce: object.coalesce,
        });
    }
    Ok(objects)
}

//! An object resolved against its tables: what its triggers capture, and what its business
//! object carries. Pure: the tables are described by the caller.

use std::collections::HashMap;

use crate::config::{ChildConfig, Columns, ObjectConfig, Rule, TableName, Verb};
use crate::key;
use crate::table::{Column, ColumnKind, Partitioning, TableInfo};

/// What the triggers of one object are generated from, and what its business object carries.
#[derive(Debug, Clone)]
pub struct Capture {
    pub object: ObjectConfig,
    pub table: TableInfo,
    /// Key columns, in key order.
    pub keys: Vec<Column>,
    pub delimiter: String,
    /// The columns the business object carries, in table order: the key columns always.
    pub attributes: Vec<Column>,
    /// The columns an `Update` must change to make an event; `None`: any column (the row).
    pub detect: Option<Vec<Column>>,
    /// The columns whose old and new value an `Update` carries (`changes`), in table order.
    pub changes: Vec<Column>,
    pub children: Vec<ChildCapture>,
}

/// A child table of an object, resolved.
#[derive(Debug, Clone)]
pub struct ChildCapture {
    pub config: ChildConfig,
    pub table: TableInfo,
    /// Where it sits: `lines`, `lines.notes`: for routine names and messages.
    pub path: String,
    /// The child's columns holding its parent's key, in the parent's key order.
    pub parent_keys: Vec<Column>,
    /// The child's own key (its primary key), which its children refer to; empty when it has
    /// none (it then has no children).
    pub keys: Vec<Column>,
    pub order_by: Vec<Column>,
    /// The columns a child row carries, in table order: its key and parent key columns always.
    pub attributes: Vec<Column>,
    pub children: Vec<ChildCapture>,
}

impl Capture {
    /// The tables an object needs described: its own and its children's, parents first.
    pub fn tables(object: &ObjectConfig) -> Vec<TableName> {
        fn of_children(children: &[ChildConfig], out: &mut Vec<TableName>) {
            for child in children {
                out.push(child.table.clone());
                of_children(&child.children, out);
            }
        }
        let mut out: Vec<TableName> = object.table.iter().cloned().collect();
        of_children(&object.children, &mut out);
        out
    }

    /// Resolves an object against the descriptions of its tables ([`Capture::tables`]; a table
    /// missing from `tables` does not exist), or lists every problem, each naming the object,
    /// the setting and the column.
    pub fn new(
        object: &ObjectConfig,
        tables: &HashMap<TableName, TableInfo>,
        delimiter: &str,
    ) -> Result<Capture, Vec<String>> {
        let who = format!("object {}", object.name);
        let Some(name) = &object.table else {
            return Err(vec![format!("{who} is an outbox object: it has no table")]);
        };
        let Some(table) = tables.get(name) else {
            return Err(vec![format!("{who}: table {name} does not exist")]);
        };
        let mut problems = Vec::new();
        not_a_partition(table, &who, &mut problems);
        let key_names = match &object.keys {
            Some(keys) => keys.clone(),
            None if table.primary_key.is_empty() => {
                problems.push(format!(
                    "{who}: table {name} has no primary key; set `keys` to the columns that identify a row"
                ));
                Vec::new()
            }
            None => table.primary_key.clone(),
        };
        let keys = columns_named(table, &key_names, &who, "key column", &mut problems);
        let attributes = chosen(
            table,
            &object.attributes,
            &keys,
            &who,
            "attributes",
            &mut problems,
        );
        let detect = match &object.track {
            Columns::Only(list) => Some(columns_named(
                table,
                list,
                &who,
                "`track` column",
                &mut problems,
            )),
            Columns::Except(list) => {
                columns_named(table, list, &who, "`ignore` column", &mut problems);
                Some(
                    attributes
                        .iter()
                        .filter(|c| !list.contains(&c.name))
                        .cloned()
                        .collect(),
                )
            }
            Columns::All if attributes.len() == table.columns.len() => None,
            Columns::All => Some(attributes.clone()),
        };
        let changes = match (object.changes, &detect) {
            (false, _) => Vec::new(),
            (true, None) => attributes.clone(),
            (true, Some(detect)) => attributes
                .iter()
                .filter(|c| detect.iter().any(|d| d.name == c.name))
                .cloned()
                .collect(),
        };
        let children = object
            .children
            .iter()
            .filter_map(|child| {
                ChildCapture::new(child, &keys, &child.name, tables, &who, &mut problems)
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Capture {
            object: object.clone(),
            table: table.clone(),
            keys,
            delimiter: delimiter.to_string(),
            attributes,
            detect,
            changes,
            children,
        })
    }

    pub fn captures(&self, verb: Verb) -> bool {
        self.object.verbs.contains(&verb)
    }

    /// The object key of `row` (`NEW`, `OLD` or a row alias) as a SQL expression.
    pub fn key_sql(&self, s: &KeySyntax, row: &str) -> String {
        let pairs: Vec<(&str, &Column)> = self.keys.iter().map(|c| (c.name.as_str(), c)).collect();
        key_sql(s, &self.delimiter, &pairs, row)
    }

    /// Every child, depth first, with the chain of its ancestors (the object's own children
    /// first): what the capture of each child table is generated from.
    pub fn descendants(&self) -> Vec<Vec<&ChildCapture>> {
        fn walk<'a>(
            children: &'a [ChildCapture],
            chain: &mut Vec<&'a ChildCapture>,
            out: &mut Vec<Vec<&'a ChildCapture>>,
        ) {
            for child in children {
                chain.push(child);
                out.push(chain.clone());
                walk(&child.children, chain, out);
                chain.pop();
            }
        }
        let mut out = Vec::new();
        walk(&self.children, &mut Vec::new(), &mut out);
        out
    }
}

impl ChildCapture {
    fn new(
        config: &ChildConfig,
        parent_keys: &[Column],
        path: &str,
        tables: &HashMap<TableName, TableInfo>,
        object: &str,
        problems: &mut Vec<String>,
    ) -> Option<ChildCapture> {
        let who = format!("{object}, child {path}");
        let Some(table) = tables.get(&config.table) else {
            problems.push(format!("{who}: table {} does not exist", config.table));
            return None;
        };
        not_a_partition(table, &who, problems);
        let found = columns_named(
            table,
            &config.parent_keys,
            &who,
            "`parent_keys` column",
            problems,
        );
        if config.parent_keys.len() != parent_keys.len() {
            problems.push(format!(
                "{who}: `parent_keys` lists {} columns, the parent's key has {} ({})",
                config.parent_keys.len(),
                parent_keys.len(),
                parent_keys
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let keys = columns_named(table, &table.primary_key, &who, "key column", problems);
        let order_by = match &config.order_by {
            Some(list) => columns_named(table, list, &who, "`order_by` column", problems),
            None if keys.is_empty() => {
                problems.push(format!(
                    "{who}: table {} has no primary key; set `order_by`",
                    config.table
                ));
                Vec::new()
            }
            None => keys.clone(),
        };
        if keys.is_empty() && !config.children.is_empty() {
            problems.push(format!(
                "{who}: table {} has no primary key, which its children would refer to",
                config.table
            ));
        }
        let always: Vec<Column> = keys.iter().chain(&found).cloned().collect();
        let attributes = chosen(
            table,
            &config.attributes,
            &always,
            &who,
            "attributes",
            problems,
        );
        let children = config
            .children
            .iter()
            .filter_map(|child| {
                let path = format!("{path}.{}", child.name);
                ChildCapture::new(child, &keys, &path, tables, object, problems)
            })
            .collect();
        Some(ChildCapture {
            config: config.clone(),
            table: table.clone(),
            path: path.to_string(),
            parent_keys: found,
            keys,
            order_by,
            attributes,
            children,
        })
    }
}

/// A partition is captured through its partitioned table, whose triggers PostgreSQL clones onto
/// every partition (also those attached later); triggers of a partition's own would miss the
/// rows written through the partitioned table.
fn not_a_partition(table: &TableInfo, who: &str, problems: &mut Vec<String>) {
    if let Partitioning::PartitionOf(root) = &table.partitioning {
        problems.push(format!(
            "{who}: table {} is a partition of {root}: bind it to {root}, whose capture covers every partition",
            table.name
        ));
    }
}

/// The columns of `table` named in `names`, in that order; a problem for each that is missing.
fn columns_named(
    table: &TableInfo,
    names: &[String],
    who: &str,
    what: &str,
    problems: &mut Vec<String>,
) -> Vec<Column> {
    names
        .iter()
        .filter_map(|n| match table.column(n) {
            Some(c) => Some(c.clone()),
            None => {
                problems.push(format!(
                    "{who}: {what} {n:?} does not exist in table {}",
                    table.name
                ));
                None
            }
        })
        .collect()
}

/// The columns a `Columns` setting chooses, in table order, with `always` in any case.
fn chosen(
    table: &TableInfo,
    setting: &Columns,
    always: &[Column],
    who: &str,
    key: &str,
    problems: &mut Vec<String>,
) -> Vec<Column> {
    let what = match setting {
        Columns::Except(_) => "`exclude_attributes` column",
        _ => "`attributes` column",
    };
    columns_named(table, setting.named(), who, what, problems);
    if let Columns::Except(list) = setting {
        for c in always.iter().filter(|c| list.contains(&c.name)) {
            problems.push(format!(
                "{who}: {key}: {:?} is a key column, which the business object always carries",
                c.name
            ));
        }
    }
    table
        .columns
        .iter()
        .filter(|c| setting.contains(&c.name) || always.iter().any(|a| a.name == c.name))
        .cloned()
        .collect()
}

/// The parent object's key of a child row (`row`), as a SQL expression: from the row's parent
/// key columns for the object's own children, through the rows of the children between them
/// (a subquery per level, each table named by `table`) for a child further down. `chain` runs
/// from the object's child to this one.
pub fn root_key(
    c: &Capture,
    chain: &[&ChildCapture],
    row: &str,
    s: &KeySyntax,
    table: fn(&TableName) -> String,
) -> String {
    let (last, above) = chain.split_last().expect("a child has a chain");
    match above.last() {
        None => {
            let pairs: Vec<(&str, &Column)> = c
                .keys
                .iter()
                .map(|k| k.name.as_str())
                .zip(&last.parent_keys)
                .collect();
            key_sql(s, &c.delimiter, &pairs, row)
        }
        Some(parent) => {
            let alias = format!("p{}", above.len());
            let matches: Vec<String> = parent
                .keys
                .iter()
                .zip(&last.parent_keys)
                .map(|(pk, fk)| {
                    format!(
                        "{alias}.{} = {row}.{}",
                        (s.ident)(&pk.name),
                        (s.ident)(&fk.name)
                    )
                })
                .collect();
            format!(
                "(SELECT {} FROM {} {alias} WHERE {})",
                root_key(c, above, &alias, s, table),
                table(&parent.table.name),
                matches.join(" AND ")
            )
        }
    }
}

/// See [`KeySyntax::long_values`].
pub type LongValues<'a> = dyn Fn(&Column, &str, String) -> String + 'a;

/// How a dialect spells the parts of the object-key expression.
pub struct KeySyntax<'a> {
    pub ident: fn(&str) -> String,
    pub literal: fn(&str) -> String,
    /// Joins text expressions (`a || b`, `CONCAT(a, b)`); a single one stays as it is.
    pub concat: fn(&[String]) -> String,
    /// A key column's value in a row, as text.
    pub text: &'a dyn Fn(&Column, &str) -> String,
    /// The string replace function's name.
    pub replace: &'static str,
    /// Where `replace` takes time quadratic in a value's length (MySQL, MariaDB): given a key
    /// column, its value's text and that text escaped by `replace`, the expression that escapes
    /// it in linear time when it is long.
    pub long_values: Option<&'a LongValues<'a>>,
}

/// An object key as a SQL expression over `row` (`NEW`, `OLD` or a row alias): each pair is
/// the key's column name and the column of `row` holding its value, in key order. The same
/// encoding as [`key::encode`] (README, *Object keys*), computed inside the trigger.
pub fn key_sql(s: &KeySyntax, delimiter: &str, pairs: &[(&str, &Column)], row: &str) -> String {
    let lit = s.literal;
    let escapes: Vec<(char, String)> = key::reserved_chars(delimiter)
        .into_iter()
        .map(|c| (c, key::percent(c)))
        .collect();
    let mut parts = Vec::new();
    for (i, (name, col)) in pairs.iter().enumerate() {
        let name = key::encode_part(name, delimiter);
        if i > 0 {
            parts.push(lit(delimiter));
        }
        // An integer's text is a sign and digits: only those reserved characters can be in
        // it. Each replace() left out is a function call less in every captured change.
        let text = (s.text)(col, row);
        let value = escapes
            .iter()
            .filter(|(ch, _)| col.kind != ColumnKind::Integer || ch.is_ascii_digit() || *ch == '-')
            .fold(text.clone(), |v, (ch, esc)| {
                format!("{}({v}, {}, {})", s.replace, lit(&ch.to_string()), lit(esc))
            });
        let value = match s.long_values {
            Some(long) if col.kind != ColumnKind::Integer => long(col, &text, value),
            _ => value,
        };
        let pair = (s.concat)(&[lit(&format!("{name}=")), value]);
        parts.push(if col.nullable {
            format!(
                "CASE WHEN {row}.{} IS NULL THEN {} ELSE {pair} END",
                (s.ident)(&col.name),
                lit(&name)
            )
        } else {
            pair
        });
    }
    (s.concat)(&parts)
}

/// The columns an event chosen by rules is written with (see [`Chosen`]).
pub const RULE_COLUMNS: &str =
    "(object_name, object_verb, object_key, event_priority, payload, event_action, event_comment)";

/// What the first rule whose condition holds gives a change's event, as SQL for a trigger:
/// Infranet's event_code.txt, evaluated in the application's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// A derived table of one row, `trigpoll_rule`, whose column `i` is the number (from 1, in
    /// file order) of the first rule of the action whose condition holds, 0 when none does: the
    /// conditions are evaluated once per row, whatever else asks for the number.
    pub from: String,
    pub verb: String,
    pub priority: String,
    pub comment: String,
    /// The condition that the change makes an event: no rule with `skip = true` was chosen.
    pub filter: Option<String>,
}

/// The rules of `action` among `rules` as SQL ([`Chosen`]), or `None` when none is tried for
/// it: the trigger then writes the event it writes without rules. `default_priority` is the
/// object's, `literal` the dialect's string literal, `condition` writes a rule's condition
/// over the rows the statement has.
pub fn by_rules(
    rules: &[Rule],
    action: Verb,
    default_priority: i32,
    literal: fn(&str) -> String,
    condition: &dyn Fn(&str) -> String,
) -> Option<Chosen> {
    by_rules_with(
        rules,
        action,
        action.as_str(),
        default_priority,
        literal,
        condition,
    )
}

/// [`by_rules`] with the verb of the event no rule chooses.
fn by_rules_with(
    rules: &[Rule],
    action: Verb,
    default_verb: &str,
    default_priority: i32,
    literal: fn(&str) -> String,
    condition: &dyn Fn(&str) -> String,
) -> Option<Chosen> {
    let tried: Vec<(usize, &Rule)> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.applies_to(action))
        .map(|(i, r)| (i + 1, r))
        .collect();
    if tried.is_empty() {
        return None;
    }
    // Up to the first rule without a condition, which takes every change left.
    let mut arms = Vec::new();
    let mut otherwise = 0;
    for (number, rule) in &tried {
        match &rule.when {
            Some(when) => arms.push(format!("WHEN ({}) THEN {number}", condition(when))),
            None => {
                otherwise = *number;
                break;
            }
        }
    }
    let number = match arms.is_empty() {
        true => otherwise.to_string(),
        false => format!("CASE {} ELSE {otherwise} END", arms.join(" ")),
    };
    let reached: Vec<&(usize, &Rule)> = tried
        .iter()
        .filter(|(n, _)| otherwise == 0 || *n <= otherwise)
        .collect();
    // One value per rule that sets it, the default for every other number.
    let pick = |value: &dyn Fn(&Rule) -> Option<String>, default: String| {
        let arms: Vec<String> = reached
            .iter()
            .filter(|(_, r)| !r.skip)
            .filter_map(|(n, r)| Some(format!("WHEN {n} THEN {}", value(r)?)))
            .collect();
        let otherwise = match default.as_str() {
            "NULL" => String::new(),
            _ => format!(" ELSE {default}"),
        };
        match arms.is_empty() {
            true => default,
            false => format!("CASE trigpoll_rule.i {}{otherwise} END", arms.join(" ")),
        }
    };
    let skips: Vec<String> = reached
        .iter()
        .filter(|(_, r)| r.skip)
        .map(|(n, _)| n.to_string())
        .collect();
    Some(Chosen {
        from: format!("(SELECT {number} AS i) AS trigpoll_rule"),
        verb: pick(&|r| r.verb.as_deref().map(literal), literal(default_verb)),
        priority: pick(
            &|r| r.priority.map(|p| p.to_string()),
            default_priority.to_string(),
        ),
        comment: pick(&|r| r.comment.as_deref().map(literal), "NULL".into()),
        filter: match skips.len() {
            0 => None,
            1 => Some(format!("trigpoll_rule.i <> {}", skips[0])),
            _ => Some(format!("trigpoll_rule.i NOT IN ({})", skips.join(", "))),
        },
    })
}

/// The event a child row's change makes for its parent, as SQL: without rules an `Update` at
/// the object's priority; with rules of the child table for the action, what they choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentEvent {
    /// The event table's columns written.
    pub columns: &'static str,
    pub verb: String,
    /// The values after the object's name, its verb and its key.
    pub rest: String,
    /// [`Chosen::from`], when rules choose.
    pub rules: Option<String>,
    /// [`Chosen::filter`].
    pub filter: Option<String>,
}

impl ParentEvent {
    pub fn new(
        rules: &[Rule],
        action: Verb,
        priority: i32,
        literal: fn(&str) -> String,
        condition: &dyn Fn(&str) -> String,
    ) -> ParentEvent {
        let update = Verb::Update.as_str();
        match by_rules_with(rules, action, update, priority, literal, condition) {
            None => ParentEvent {
                columns: "(object_name, object_verb, object_key, event_priority)",
                verb: literal(Verb::Update.as_str()),
                rest: priority.to_string(),
                rules: None,
                filter: None,
            },
            Some(r) => ParentEvent {
                columns: "(object_name, object_verb, object_key, event_priority, event_action, event_comment)",
                verb: r.verb,
                rest: format!(
                    "{}, {}, {}",
                    r.priority,
                    literal(Verb::Update.action()),
                    r.comment
                ),
                rules: Some(r.from),
                filter: r.filter,
            },
        }
    }

    /// The statement that writes this event for the distinct non-NULL parent keys among `keys`
    /// (SQL expressions), as MySQL and SQLite triggers run it: `INSERT INTO … SELECT DISTINCT`
    /// from a `UNION ALL` of the keys. `indent` is that of its first line and of its second.
    pub fn insert_distinct(
        &self,
        event_table: &str,
        object: &str,
        keys: &[String],
        indent: (&str, &str),
    ) -> String {
        let rows: Vec<String> = keys.iter().map(|k| format!("SELECT {k} AS k")).collect();
        format!(
            "{}INSERT INTO {event_table} {}\n{}SELECT DISTINCT {object}, {}, p.k, {} FROM ({}) AS p{} WHERE p.k IS NOT NULL{};",
            indent.0,
            self.columns,
            indent.1,
            self.verb,
            self.rest,
            rows.join(" UNION ALL "),
            self.rules
                .as_ref()
                .map(|r| format!(" CROSS JOIN {r}"))
                .unwrap_or_default(),
            self.filter
                .as_ref()
                .map(|f| format!(" AND {f}"))
                .unwrap_or_default(),
        )
    }
}

/// How a backend's SQL quotes text, for [`rewrite_rows`]: where a string or a quoted identifier
/// ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// `'…'` with `''` inside and no backslash escapes (`standard_conforming_strings`, on since
    /// PostgreSQL 9.1); `E'…'` with backslash escapes; `$$…$$` and `$tag$…$tag$`; `"…"`
    /// identifiers.
    Postgres,
    /// `'…'` and `"…"` strings with backslash escapes (trigpoll's sessions and triggers run
    /// without `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES`); `` `…` `` identifiers.
    Mysql,
    /// `'…'`, `"…"`, `` `…` `` and `[…]`, a doubled quote inside; no backslash escapes.
    Sqlite,
}

/// A `when` condition with `NEW.` and `OLD.` (any case, outside quoted strings and identifiers
/// as `quoting` writes them) written as `new_row.` and `old_row.`: for statements over
/// transition tables, and for the checks `install-triggers` makes before it installs anything.
pub fn rewrite_rows(condition: &str, new_row: &str, old_row: &str, quoting: Quoting) -> String {
    let mut out = String::with_capacity(condition.len());
    let chars: Vec<char> = condition.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut i = 0;
    let mut previous: Option<char> = None;
    while i < chars.len() {
        if let Some(end) = quoted_end(&chars, i, quoting) {
            out.extend(&chars[i..end]);
            previous = Some(chars[end - 1]);
            i = end;
            continue;
        }
        let c = chars[i];
        let starts_word = previous.is_none_or(|p| !word(p));
        let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
        let upper = rest.to_ascii_uppercase();
        let replacement = if starts_word && upper == "NEW." {
            Some(new_row)
        } else if starts_word && upper == "OLD." {
            Some(old_row)
        } else {
            None
        };
        match replacement {
            Some(row) => {
                out.push_str(row);
                out.push('.');
                i += 4;
                previous = Some('.');
            }
            None => {
                out.push(c);
                previous = Some(c);
                i += 1;
            }
        }
    }
    out
}

/// Where the quoted text that starts at `i` ends (just after its closing quote; the end of the
/// text when it is not closed), or `None` when none starts there.
fn quoted_end(chars: &[char], i: usize, quoting: Quoting) -> Option<usize> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let after_word = i > 0 && word(chars[i - 1]);
    // Up to the closing `quote`; a doubled one stays inside, and with `backslash` so does an
    // escaped one.
    let until = |quote: char, backslash: bool| {
        let mut j = i + 1;
        while j < chars.len() {
            match chars[j] {
                '\\' if backslash => j += 2,
                c if c == quote && chars.get(j + 1) == Some(&quote) => j += 2,
                c if c == quote => return j + 1,
                _ => j += 1,
            }
        }
        chars.len()
    };
    match (quoting, chars[i]) {
        (Quoting::Postgres, '\'') => {
            // E'…' (or e'…'), the E standing alone: an escape string.
            let escape =
                i > 0 && matches!(chars[i - 1], 'E' | 'e') && (i < 2 || !word(chars[i - 2]));
            Some(until('\'', escape))
        }
        (Quoting::Postgres, '"') => Some(until('"', false)),
        (Quoting::Postgres, '$') if !after_word => {
            // $tag$…$tag$, the tag empty or an identifier not starting with a digit.
            let tag_len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count();
            let closes = chars.get(i + 1 + tag_len) == Some(&'$');
            let starts_well = chars.get(i + 1).is_none_or(|c| !c.is_ascii_digit());
            if !closes || !starts_well {
                return None;
            }
            let tag = &chars[i..i + tag_len + 2];
            let body = i + tag.len();
            let end = (body..=chars.len().saturating_sub(tag.len()))
                .find(|&j| &chars[j..j + tag.len()] == tag)
                .map_or(chars.len(), |j| j + tag.len());
            Some(end)
        }
        (Quoting::Mysql, quote @ ('\'' | '"')) => Some(until(quote, true)),
        (Quoting::Mysql, '`') => Some(until('`', false)),
        (Quoting::Sqlite, quote @ ('\'' | '"' | '`')) => Some(until(quote, false)),
        (Quoting::Sqlite, '[') => Some(
            chars[i..]
                .iter()
                .position(|&c| c == ']')
                .map_or(chars.len(), |p| i + p + 1),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }

    #[test]
    fn the_first_rule_whose_condition_holds_is_numbered_once() {
        let rule = |on: &[Verb], when: Option<&str>| Rule {
            on: on.to_vec(),
            when: when.map(str::to_string),
            ..Rule::default()
        };
        let rules = [
            Rule {
                verb: Some("Close".into()),
                comment: Some("it's closed".into()),
                ..rule(&[Verb::Delete, Verb::Update], Some("OLD.s = 9"))
            },
            Rule {
                skip: true,
                ..rule(&[Verb::Update], Some("NEW.s = 1"))
            },
            Rule {
                priority: Some(4),
                ..rule(&[Verb::Update], None)
            },
            // Never reached by an update: the rule before it has no condition.
            Rule {
                verb: Some("Never".into()),
                ..rule(&[Verb::Update, Verb::Create], Some("NEW.s = 2"))
            },
        ];
        let condition = |c: &str| c.replace("NEW.", "n.");
        let update = by_rules(&rules, Verb::Update, 7, literal, &condition).unwrap();
        assert_eq!(
            update,
            Chosen {
                from: "(SELECT CASE WHEN (OLD.s = 9) THEN 1 WHEN (n.s = 1) THEN 2 ELSE 3 END AS i) AS trigpoll_rule".into(),
                verb: "CASE trigpoll_rule.i WHEN 1 THEN 'Close' ELSE 'Update' END".into(),
                priority: "CASE trigpoll_rule.i WHEN 3 THEN 4 ELSE 7 END".into(),
                comment: "CASE trigpoll_rule.i WHEN 1 THEN 'it''s closed' END".into(),
                filter: Some("trigpoll_rule.i <> 2".into()),
            }
        );
        let create = by_rules(&rules, Verb::Create, 7, literal, &condition).unwrap();
        assert_eq!(
            (create.from.as_str(), create.verb.as_str(), create.filter),
            (
                "(SELECT CASE WHEN (n.s = 2) THEN 4 ELSE 0 END AS i) AS trigpoll_rule",
                "CASE trigpoll_rule.i WHEN 4 THEN 'Never' ELSE 'Create' END",
                None
            )
        );
        assert_eq!(
            (create.priority.as_str(), create.comment.as_str()),
            ("7", "NULL")
        );
        assert_eq!(
            by_rules(&rules[1..3], Verb::Delete, 7, literal, &condition),
            None
        );
        let child = ParentEvent::new(&rules, Verb::Delete, 7, literal, &condition);
        assert_eq!(
            child.verb,
            "CASE trigpoll_rule.i WHEN 1 THEN 'Close' ELSE 'Update' END"
        );
        assert_eq!(
            child.rest,
            "7, 'update', CASE trigpoll_rule.i WHEN 1 THEN 'it''s closed' END"
        );
    }

    #[test]
    fn rows_are_rewritten_outside_quotes_only() {
        for quoting in [Quoting::Postgres, Quoting::Mysql, Quoting::Sqlite] {
            assert_eq!(
                rewrite_rows(
                    "NEW.status <> 'NEW.x' AND old.Qty > 0 AND renew.x = 1",
                    "n",
                    "o",
                    quoting
                ),
                "n.status <> 'NEW.x' AND o.Qty > 0 AND renew.x = 1"
            );
            assert_eq!(
                rewrite_rows("(New.a = 'it''s NEW.')", "n", "o", quoting),
                "(n.a = 'it''s NEW.')"
            );
        }
        assert_eq!(
            rewrite_rows(
                "old.\"Qty\" > 0 AND \"OLD.y\" = 1",
                "n",
                "o",
                Quoting::Postgres
            ),
            "o.\"Qty\" > 0 AND \"OLD.y\" = 1"
        );
    }

    #[test]
    fn mysql_strings_take_backslash_escapes() {
        assert_eq!(
            rewrite_rows(
                r#"NEW.a = 'it\'s NEW.x' AND OLD.b = "say \"OLD.\"" AND `NEW.c` = OLD.d"#,
                "n",
                "o",
                Quoting::Mysql
            ),
            r#"n.a = 'it\'s NEW.x' AND o.b = "say \"OLD.\"" AND `NEW.c` = o.d"#
        );
        assert_eq!(
            rewrite_rows(r"NEW.a = 'C:\\' AND NEW.b = 1", "n", "o", Quoting::Mysql),
            r"n.a = 'C:\\' AND n.b = 1"
        );
    }

    #[test]
    fn postgres_dollar_quotes_and_escape_strings() {
        assert_eq!(
            rewrite_rows(
                "NEW.a = $$NEW.x$$ AND NEW.b = $t$ it's OLD.y $t$ AND OLD.c = E'it\\'s NEW.z' \
                 AND NEW.d = 'a\\' AND old.e = e'\\\\' AND OLD.f = 1",
                "n",
                "o",
                Quoting::Postgres
            ),
            "n.a = $$NEW.x$$ AND n.b = $t$ it's OLD.y $t$ AND o.c = E'it\\'s NEW.z' \
             AND n.d = 'a\\' AND o.e = e'\\\\' AND o.f = 1"
        );
        // Not a dollar quote: `$` inside an identifier, a positional parameter.
        assert_eq!(
            rewrite_rows("a$b$ = NEW.x AND $1 = OLD.y", "n", "o", Quoting::Postgres),
            "a$b$ = n.x AND $1 = o.y"
        );
        // `note'…'` is no escape string: its E ends a word.
        assert_eq!(
            rewrite_rows("NEW.note'x\\' AND OLD.y = 1", "n", "o", Quoting::Postgres),
            "n.note'x\\' AND o.y = 1"
        );
    }

    #[test]
    fn sqlite_has_no_backslash_escapes() {
        assert_eq!(
            rewrite_rows(
                r"NEW.a = 'x\' AND [NEW.b] = OLD.c",
                "n",
                "o",
                Quoting::Sqlite
            ),
            r"n.a = 'x\' AND [NEW.b] = o.c"
        );
    }
}

//! Subscription patterns: `Object.Verb`, `Object.*`, `*.Verb`, `*.*` (or `*`).

use std::fmt;
use std::str::FromStr;

/// One `Object.Verb` pattern; `None` on a side is the `*` wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    object: Option<String>,
    verb: Option<String>,
}

impl Subscription {
    /// The object it names, `None` for `*`.
    pub fn object(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// The verb it names, `None` for `*`.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    pub fn matches(&self, object: &str, verb: &str) -> bool {
        self.object.as_deref().is_none_or(|o| o == object)
            && self.verb.as_deref().is_none_or(|v| v == verb)
    }
}

impl FromStr for Subscription {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Subscription {
                object: None,
                verb: None,
            });
        }
        let (object, verb) = s
            .rsplit_once('.')
            .ok_or_else(|| format!("subscription {s:?} is not of the form Object.Verb"))?;
        if object.is_empty() || verb.is_empty() {
            return Err(format!(
                "subscription {s:?} has an empty object or verb; use * for any"
            ));
        }
        // Names are matched exactly: a `*` inside a name (`Emp*`) would never match anything.
        if [object, verb].iter().any(|p| *p != "*" && p.contains('*')) {
            return Err(format!(
                "subscription {s:?}: `*` must stand alone on its side of the dot (partial \
                 wildcards such as Emp* are not supported); write Object.Verb, Object.*, \
                 *.Verb or *.*"
            ));
        }
        let side = |p: &str| (p != "*").then(|| p.to_string());
        Ok(Subscription {
            object: side(object),
            verb: side(verb),
        })
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.object.as_deref().unwrap_or("*"),
            self.verb.as_deref().unwrap_or("*")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> Subscription {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_as_documented() {
        assert!(sub("Employee.Create").matches("Employee", "Create"));
        assert!(!sub("Employee.Create").matches("Employee", "Update"));
        assert!(!sub("Employee.Create").matches("Department", "Create"));
        assert!(sub("Employee.*").matches("Employee", "Delete"));
        assert!(!sub("Employee.*").matches("Department", "Delete"));
        assert!(sub("*.Delete").matches("Department", "Delete"));
        assert!(!sub("*.Delete").matches("Department", "Create"));
        assert!(sub("*.*").matches("X", "Y"));
        assert!(sub("*").matches("X", "Y"));
    }

    #[test]
    fn object_names_with_dots_split_at_the_last_dot() {
        assert!(sub("hr.Employee.Create").matches("hr.Employee", "Create"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "Employee",
            "Employee.",
            ".Create",
            "",
            "Emp*.Create",
            "Employee.Cre*",
            "*Employee.*",
            "**.*",
        ] {
            assert!(bad.parse::<Subscription>().is_err(), "{bad:?} was accepted");
        }
    }
}

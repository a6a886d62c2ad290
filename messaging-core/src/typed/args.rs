//! Keyword arguments: built by typed clients ([`Args`]), checked and taken apart by typed
//! servers ([`KwArgs`]), as Python's dispatcher passes `**kwargs` to a method.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{MethodInfo, ParamInfo};
use crate::error::{MessagingError, RemoteError, Result};

/// The keyword arguments of one request, as a typed client builds them. The first
/// serialization error is kept and reported when the request is sent.
#[derive(Debug, Default)]
pub struct Args {
    map: Map<String, Value>,
    error: Option<MessagingError>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `name = value`.
    pub fn arg(mut self, name: &str, value: &(impl Serialize + ?Sized)) -> Self {
        if self.error.is_none() {
            match serde_json::to_value(value) {
                Ok(value) => {
                    self.map.insert(name.to_owned(), value);
                }
                Err(error) => self.error = Some(error.into()),
            }
        }
        self
    }

    /// Add `name = value` unless `value` is `None`: the server then uses its default, as a
    /// Python keyword argument left out.
    pub fn optional<T: Serialize>(self, name: &str, value: &Option<T>) -> Self {
        match value {
            Some(value) => self.arg(name, value),
            None => self,
        }
    }

    /// The arguments, or the first error met while building them.
    pub fn into_map(self) -> Result<Map<String, Value>> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.map),
        }
    }
}

/// The keyword arguments a typed server received for one method, checked against its
/// parameters.
#[derive(Debug)]
pub struct KwArgs {
    qualname: &'static str,
    map: Map<String, Value>,
}

impl KwArgs {
    /// Check `args` as Python checks a call to `method`: an unknown keyword or a missing
    /// required one is oslo's `TypeError` remote error, with Python's wording.
    pub fn check(method: &MethodInfo, args: Map<String, Value>) -> Result<Self, RemoteError> {
        if let Some(unknown) = args
            .keys()
            .find(|name| !method.params.iter().any(|p| p.name == name.as_str()))
        {
            return Err(type_error(format!(
                "{}() got an unexpected keyword argument '{unknown}'",
                method.qualname
            )));
        }
        let missing: Vec<&str> = method
            .params
            .iter()
            .filter(|p| p.required && !args.contains_key(p.name))
            .map(|p| p.name)
            .collect();
        if !missing.is_empty() {
            return Err(type_error(missing_message(method.qualname, &missing)));
        }
        Ok(Self {
            qualname: method.qualname,
            map: args,
        })
    }

    /// Keyword arguments not checked against any declaration (an exception's kwargs).
    pub fn lenient(qualname: &'static str, map: Map<String, Value>) -> Self {
        Self { qualname, map }
    }

    /// Take the argument `name` as a `T`; an absent one decodes from `null` (so an
    /// `Option<T>` becomes `None`).
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, RemoteError> {
        let value = self.map.remove(name).unwrap_or(Value::Null);
        serde_json::from_value(value)
            .map_err(|e| type_error(format!("{}() argument '{name}': {e}", self.qualname)))
    }
}

/// The parameters of `params` that a caller must give.
pub(super) fn required(params: &[ParamInfo]) -> impl Iterator<Item = &ParamInfo> {
    params.iter().filter(|p| p.required)
}

fn type_error(message: String) -> RemoteError {
    RemoteError::new("TypeError", message)
}

/// Python's `f() missing 2 required positional arguments: 'a' and 'b'`.
fn missing_message(qualname: &str, missing: &[&str]) -> String {
    let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
    let names = match quoted.as_slice() {
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
        [] => String::new(),
    };
    let plural = if missing.len() == 1 { "" } else { "s" };
    format!(
        "{qualname}() missing {} required positional argument{plural}: {names}",
        missing.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::schema_of;
    use serde_json::json;

    static METHOD: MethodInfo = MethodInfo {
        name: "select_host",
        qualname: "Scheduler.select_host",
        doc: "",
        since: "1.0",
        params: &[
            ParamInfo {
                name: "flavor",
                required: true,
                schema: schema_of::<String>,
            },
            ParamInfo {
                name: "count",
                required: true,
                schema: schema_of::<u32>,
            },
            ParamInfo {
                name: "zone",
                required: false,
                schema: schema_of::<Option<String>>,
            },
        ],
        result: schema_of::<Vec<String>>,
        errors: &[],
    };

    fn check(args: Value) -> Result<KwArgs, RemoteError> {
        let Value::Object(map) = args else {
            unreachable!()
        };
        KwArgs::check(&METHOD, map)
    }

    fn message(args: Value) -> String {
        let error = check(args).unwrap_err();
        assert_eq!(
            (error.class.as_str(), error.module.as_str()),
            ("TypeError", "builtins")
        );
        error.message
    }

    #[test]
    fn unknown_and_missing_keywords_are_python_type_errors() {
        assert_eq!(
            message(json!({"flavor": "m1", "count": 1, "zonee": "a"})),
            "Scheduler.select_host() got an unexpected keyword argument 'zonee'"
        );
        assert_eq!(
            message(json!({"flavor": "m1"})),
            "Scheduler.select_host() missing 1 required positional argument: 'count'"
        );
        assert_eq!(
            message(json!({})),
            "Scheduler.select_host() missing 2 required positional arguments: 'flavor' and 'count'"
        );
        assert_eq!(
            missing_message("f", &["a", "b", "c"]),
            "f() missing 3 required positional arguments: 'a', 'b', and 'c'"
        );
    }

    #[test]
    fn optional_keywords_may_be_left_out_and_types_are_checked() {
        let mut args = check(json!({"flavor": "m1", "count": 2})).unwrap();
        assert_eq!(args.take::<String>("flavor").unwrap(), "m1");
        assert_eq!(args.take::<u32>("count").unwrap(), 2);
        assert_eq!(args.take::<Option<String>>("zone").unwrap(), None);
        let mut args = check(json!({"flavor": "m1", "count": "two"})).unwrap();
        let error = args.take::<u32>("count").unwrap_err();
        assert_eq!(error.class, "TypeError");
        assert!(
            error
                .message
                .starts_with("Scheduler.select_host() argument 'count': invalid type"),
            "{}",
            error.message
        );
    }

    #[test]
    fn client_args_leave_out_none_and_keep_the_first_error() {
        let map = Args::new()
            .arg("flavor", "m1")
            .optional::<String>("zone", &None)
            .optional("count", &Some(2))
            .into_map()
            .unwrap();
        assert_eq!(Value::Object(map), json!({"flavor": "m1", "count": 2}));
        let bad = std::collections::HashMap::from([((1, 2), 3)]);
        assert!(matches!(
            Args::new().arg("bad", &bad).arg("ok", &1).into_map(),
            Err(MessagingError::Serialization(_))
        ));
    }
}

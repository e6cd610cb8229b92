//! A tiny argument reader: `--flag VALUE`, `--flag=VALUE`, `--switch` and positionals.

use std::path::PathBuf;

use super::{CliError, Result};

pub struct Args {
    items: Vec<String>,
}

impl Args {
    pub fn new(args: &[String]) -> Args {
        Args { items: args.to_vec() }
    }

    /// The first argument, removed.
    pub fn command(&mut self) -> Option<String> {
        (!self.items.is_empty()).then(|| self.items.remove(0))
    }

    /// Every value of `--name VALUE` or `--name=VALUE`, removed.
    pub fn values(&mut self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            if self.items[i] == name {
                if i + 1 >= self.items.len() {
                    return Err(CliError::usage(format!("{name} needs a value")));
                }
                out.push(self.items.remove(i + 1));
                self.items.remove(i);
            } else if let Some(v) = self.items[i].strip_prefix(&format!("{name}=")) {
                out.push(v.to_string());
                self.items.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    /// The value of `--name`, if given (the last one wins).
    pub fn value(&mut self, name: &str) -> Result<Option<String>> {
        Ok(self.values(name)?.pop())
    }

    pub fn path(&mut self, name: &str) -> Result<Option<PathBuf>> {
        Ok(self.value(name)?.map(PathBuf::from))
    }

    pub fn number(&mut self, name: &str) -> Result<Option<u64>> {
        match self.value(name)? {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| CliError::usage(format!("{name} must be a whole number, not `{v}`")))
            }
        }
    }

    /// Whether `--name` was given, removed.
    pub fn switch(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|a| a != name);
        self.items.len() != before
    }

    /// The next positional argument, removed.
    pub fn positional(&mut self) -> Option<String> {
        let i = self.items.iter().position(|a| !a.starts_with("--"))?;
        Some(self.items.remove(i))
    }

    /// Fails on anything not consumed, so that a typo is not silently ignored.
    pub fn finish(self) -> Result<()> {
        match self.items.first() {
            None => Ok(()),
            Some(a) => Err(CliError::usage(format!("unexpected argument `{a}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::new(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn flags_values_and_leftovers() {
        let mut a = args("serve --config x.toml --app a:b --app=c:d --live");
        assert_eq!(a.command().as_deref(), Some("serve"));
        assert_eq!(a.value("--config").unwrap().as_deref(), Some("x.toml"));
        assert_eq!(a.values("--app").unwrap(), ["a:b", "c:d"]);
        assert!(a.switch("--live"));
        assert!(a.finish().is_ok());
        let mut a = args("--config");
        assert!(a.value("--config").is_err());
        assert!(args("--bogus").finish().is_err());
    }
}

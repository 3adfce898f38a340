//! `--set` / `--body` under load: field values that every request of a callback carries,
//! laid over its freshly generated fields (pure; checked against the catalog by the command).

use crate::catalog::Callback;
use crate::endpoint::request;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    per: Vec<(&'static Callback, Vec<(String, Value)>)>,
}

impl Overrides {
    /// `path` (a field, or `a.b` inside one) is `value` in every request of `cb`.
    pub fn add(&mut self, cb: &'static Callback, path: &str, value: Value) {
        let k = match self.per.iter().position(|(c, _)| std::ptr::eq(*c, cb)) {
            Some(k) => k,
            None => {
                self.per.push((cb, Vec::new()));
                self.per.len() - 1
            }
        };
        self.per[k].1.push((path.to_string(), value));
    }

    pub fn is_empty(&self) -> bool {
        self.per.is_empty()
    }

    /// Lays the values for `cb` over `fields`, in the order given (a later one wins).
    pub fn apply(&self, cb: &Callback, fields: &mut Map<String, Value>) -> Result<(), String> {
        if let Some((_, sets)) = self.per.iter().find(|(c, _)| std::ptr::eq(*c, cb)) {
            for (path, v) in sets {
                request::set_path(fields, path, v.clone())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{find, Protocol};

    #[test]
    fn values_go_to_their_callback_only() {
        let new = find("newInstance", Protocol::V2).unwrap();
        let query = find("queryInstance", Protocol::V2).unwrap();
        let mut o = Overrides::default();
        o.add(new, "productId", "P1".into());
        o.add(new, "productId", "P2".into());
        let mut f = Map::new();
        o.apply(new, &mut f).unwrap();
        assert_eq!(f["productId"], "P2");
        let mut g = Map::new();
        o.apply(query, &mut g).unwrap();
        assert!(g.is_empty());
    }
}

//! What `csm load` sends: `--activity NAME[:WEIGHT],…` or the dial-test mix, picked by smooth
//! weighted round robin so that the counts follow the weights exactly (pure).

use crate::catalog::{self, Callback, Protocol};
use crate::endpoint::request::Keys;

#[derive(Debug, Clone)]
pub struct Item {
    pub callback: &'static Callback,
    pub scene: Option<&'static str>,
    pub weight: u32,
}

impl Item {
    pub fn title(&self) -> String {
        self.callback.title(self.scene)
    }

    /// The call works on an instance the endpoint already knows (not newInstance).
    pub fn needs_instance(&self) -> bool {
        use crate::catalog::Family;
        matches!(self.callback.family, Family::V1Basic | Family::V2Basic)
            && self.callback.name != "newInstance"
            && self.callback.field("instanceId").is_some()
    }

    /// The scene sent: the one named, else the callback's first (as the generator picks).
    fn scene_sent(&self) -> Option<&'static str> {
        self.scene.or(self.callback.scenes.first().copied())
    }

    pub fn releases(&self) -> bool {
        self.callback.name == "releaseInstance"
    }
}

#[derive(Debug, Clone)]
pub struct Mix {
    pub items: Vec<Item>,
    current: Vec<i64>,
}

const MAX_WEIGHT: u32 = 1000;

fn item(name: &str, scene: Option<&'static str>, p: Protocol) -> Option<Item> {
    catalog::find(name, p).map(|callback| Item {
        callback,
        scene,
        weight: 1,
    })
}

/// Why `name` is no `--activity` of protocol `p`, with what was likely meant.
fn not_in(name: &str, p: Protocol) -> String {
    let names = catalog::names(p);
    let other = match p {
        Protocol::V1 => Protocol::V2,
        Protocol::V2 => Protocol::V1,
    };
    // The case mistaken, or a letter or two off (`newInstnace`).
    let close = names
        .iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .or_else(|| {
            names
                .iter()
                .map(|n| (strsim::damerau_levenshtein(n, name), n))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, n)| n)
        });
    let hint = if let Some(n) = close {
        format!("did you mean {n}?")
    } else if catalog::names(other).contains(&name) {
        format!(
            "a {} callback: pass --protocol {}",
            other.name(),
            other.name()
        )
    } else {
        format!("one of: {}", names.join(", "))
    };
    format!("--activity {name:?}: not a {} callback ({hint})", p.name())
}

impl Mix {
    pub fn new(items: Vec<Item>) -> Mix {
        let current = vec![0; items.len()];
        Mix { items, current }
    }

    /// The dial test's cases, one each (see `endpoint::suites::dial`): the basic lifecycle,
    /// tenantSync with a Kit key, the License callbacks with a License key.
    pub fn dial(p: Protocol, keys: &Keys) -> Mix {
        let mut cases: Vec<(&str, Option<&'static str>)> = Vec::new();
        if keys.basic.is_some() {
            cases.extend(match p {
                Protocol::V1 => vec![
                    ("newInstance", None),
                    ("refreshInstance", None),
                    ("expireInstance", None),
                    ("releaseInstance", None),
                ],
                Protocol::V2 => vec![
                    ("newInstance", None),
                    ("queryInstance", None),
                    ("refreshInstance", Some("RENEWAL")),
                    ("updateInstanceStatus", Some("FREEZE")),
                    ("updateInstanceStatus", Some("UNFREEZE")),
                    ("releaseInstance", None),
                ],
            });
        }
        if keys.kit.is_some() {
            cases.push(("tenantSync", None));
        }
        if keys.license.is_some() {
            cases.push(("refreshLicenseCode", Some("RENEWAL")));
            cases.push(("releaseLicenseCode", None));
        }
        Mix::new(
            cases
                .into_iter()
                .filter_map(|(n, s)| item(n, s, p))
                .collect(),
        )
    }

    /// `--scenario lifecycle`: the steps one virtual order runs, in order, on the instance
    /// its newInstance created. V1 has no query; its status step is expireInstance.
    pub fn lifecycle(p: Protocol) -> Vec<Item> {
        let steps: &[(&str, Option<&'static str>)] = match p {
            Protocol::V2 => &[
                ("newInstance", None),
                ("queryInstance", None),
                ("refreshInstance", Some("RENEWAL")),
                ("updateInstanceStatus", Some("FREEZE")),
                ("releaseInstance", None),
            ],
            Protocol::V1 => &[
                ("newInstance", None),
                ("refreshInstance", None),
                ("expireInstance", None),
                ("releaseInstance", None),
            ],
        };
        steps.iter().filter_map(|(n, s)| item(n, *s, p)).collect()
    }

    /// `--activity` values: `NAME` or `NAME:WEIGHT` (1 to 1000), each signed by a key given.
    pub fn parse(specs: &[String], p: Protocol, keys: &Keys) -> Result<Mix, String> {
        let mut items = Vec::new();
        for spec in specs.iter().flat_map(|s| s.split(',')) {
            let spec = spec.trim();
            if spec.is_empty() {
                // `newInstance:3,` was likely meant to name one more.
                return Err(format!(
                    "--activity {:?}: an empty item (a comma too many?); NAME or NAME:WEIGHT, separated by commas",
                    specs.join(",")
                ));
            }
            let (name, weight) = match spec.split_once(':') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .ok()
                        .filter(|w| (1..=MAX_WEIGHT).contains(w))
                        .ok_or_else(|| {
                            format!("--activity {spec:?}: the weight must be a whole number from 1 to {MAX_WEIGHT}")
                        })?;
                    (n.trim(), w)
                }
                None => (spec, 1),
            };
            // `NAME SCENE`, as the report titles it (`updateInstanceStatus FREEZE`).
            let (name, scene) = match name.split_once(char::is_whitespace) {
                Some((n, sc)) => (n, Some(sc.trim())),
                None => (name, None),
            };
            let mut it = item(name, None, p)
                // `find` falls back to the other protocol's callback of that name; a load
                // sends the protocol it says.
                .filter(|it| catalog::names(p).contains(&it.callback.name))
                .ok_or_else(|| not_in(name, p))?;
            if let Some(scene) = scene {
                let scenes = it.callback.scenes;
                it.scene = Some(
                    scenes
                        .iter()
                        .copied()
                        .find(|s| *s == scene)
                        .ok_or_else(|| {
                            if scenes.is_empty() {
                                format!("--activity \"{name} {scene}\": {name} has no scene")
                            } else {
                                format!(
                                    "--activity \"{name} {scene}\": the scene must be one of {}",
                                    scenes.join(", ")
                                )
                            }
                        })?,
                );
            }
            if keys.for_family(it.callback.family).is_none() {
                let flag = match it.callback.family.key_role() {
                    crate::catalog::KeyRole::Kit => "--kit-key-file",
                    crate::catalog::KeyRole::License => "--license-key-file",
                    _ => "--key-file",
                };
                return Err(format!(
                    "--activity {name}: a {} callback; pass {flag}",
                    it.callback.family.label()
                ));
            }
            if items.iter().any(|i: &Item| {
                std::ptr::eq(i.callback, it.callback) && i.scene_sent() == it.scene_sent()
            }) {
                return Err(format!(
                    "--activity {}: given twice; give it once, with one weight",
                    it.title()
                ));
            }
            it.weight = weight;
            items.push(it);
        }
        if items.is_empty() {
            return Err("--activity: no activity given".into());
        }
        Ok(Mix::new(items))
    }

    /// The next item: each item `weight` times per round, spread evenly.
    pub fn pick(&mut self) -> &Item {
        let total: i64 = self.items.iter().map(|i| i64::from(i.weight)).sum();
        let mut best = 0;
        for (k, it) in self.items.iter().enumerate() {
            self.current[k] += i64::from(it.weight);
            if self.current[k] > self.current[best] {
                best = k;
            }
        }
        self.current[best] -= total;
        &self.items[best]
    }

    pub fn describe(&self) -> String {
        self.items
            .iter()
            .map(|i| {
                if i.weight == 1 {
                    i.title()
                } else {
                    format!("{}:{}", i.title(), i.weight)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn keys(kit: bool) -> Keys {
        Keys {
            basic: Some(Secret::new("k")),
            kit: kit.then(|| Secret::new("k")),
            license: None,
        }
    }

    #[test]
    fn weights_give_exact_counts() {
        let mut m = Mix::parse(
            &["newInstance:3,queryInstance".into()],
            Protocol::V2,
            &keys(false),
        )
        .unwrap();
        let mut new = 0;
        for _ in 0..400 {
            if m.pick().callback.name == "newInstance" {
                new += 1;
            }
        }
        assert_eq!(new, 300);
    }

    #[test]
    fn dial_mix_follows_the_keys() {
        assert_eq!(Mix::dial(Protocol::V2, &keys(false)).items.len(), 6);
        assert_eq!(Mix::dial(Protocol::V2, &keys(true)).items.len(), 7);
        assert_eq!(Mix::dial(Protocol::V1, &keys(false)).items.len(), 4);
    }

    #[test]
    fn lifecycle_starts_with_new_and_ends_with_release() {
        for p in [Protocol::V1, Protocol::V2] {
            let steps = Mix::lifecycle(p);
            assert_eq!(steps.len(), if p == Protocol::V2 { 5 } else { 4 });
            assert_eq!(steps[0].callback.name, "newInstance");
            assert!(steps.last().unwrap().releases());
            assert!(steps[1..].iter().all(Item::needs_instance));
        }
    }

    #[test]
    fn bad_specs_name_the_flag_and_value() {
        let k = keys(false);
        let e = Mix::parse(&["newInstanse".into()], Protocol::V2, &k).unwrap_err();
        assert!(
            e.starts_with("--activity \"newInstanse\": not a v2 callback"),
            "{e}"
        );
        assert!(e.ends_with("(did you mean newInstance?)"), "{e}");
        let e = Mix::parse(&["newInstnace".into()], Protocol::V2, &k).unwrap_err();
        assert!(e.ends_with("(did you mean newInstance?)"), "{e}");
        // Nothing close: the list.
        let e = Mix::parse(&["orderPaid".into()], Protocol::V2, &k).unwrap_err();
        assert!(e.contains("one of: newInstance"), "{e}");
        let e = Mix::parse(&["newInstance:3,".into()], Protocol::V2, &k).unwrap_err();
        assert!(e.contains("an empty item (a comma too many?)"), "{e}");
        let e = Mix::parse(&["newInstance:0".into()], Protocol::V2, &k).unwrap_err();
        assert!(e.contains("from 1 to 1000"), "{e}");
        let e = Mix::parse(&["tenantSync".into()], Protocol::V2, &k).unwrap_err();
        assert!(e.contains("--kit-key-file"), "{e}");
    }

    #[test]
    fn a_scene_is_named_as_the_report_titles_it() {
        let k = keys(false);
        let spec = |s: &str| Mix::parse(&[s.to_string()], Protocol::V2, &k);
        let m = spec("updateInstanceStatus FREEZE:3,updateInstanceStatus UNFREEZE").unwrap();
        let got: Vec<(String, u32)> = m.items.iter().map(|i| (i.title(), i.weight)).collect();
        assert_eq!(
            got,
            [
                ("updateInstanceStatus FREEZE".to_string(), 3),
                ("updateInstanceStatus UNFREEZE".to_string(), 1)
            ]
        );
        // The describe line reads back as the same mix.
        assert_eq!(spec(&m.describe()).unwrap().describe(), m.describe());
        let e = spec("updateInstanceStatus BOGUS").unwrap_err();
        assert!(
            e.contains("the scene must be one of FREEZE, UNFREEZE"),
            "{e}"
        );
        let e = spec("newInstance RENEWAL").unwrap_err();
        assert!(e.ends_with("newInstance has no scene"), "{e}");
        let e = spec("refreshInstance RENEWAL,refreshInstance RENEWAL:2").unwrap_err();
        assert!(e.contains("refreshInstance RENEWAL: given twice"), "{e}");
        // Without a scene the first is sent: the same item as naming it.
        let e = spec("updateInstanceStatus,updateInstanceStatus FREEZE").unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }
}

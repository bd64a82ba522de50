//! The emulator's data: secrets and parameters generated from a seed, and the seeded "share
//! changed" mutation of incremental runs. Metadata is held in memory (a few hundred bytes per
//! secret); values are not stored but derived from the seed, the name and the version id on
//! each read, so 100,000 secrets of 4 KiB cost tens of megabytes, not hundreds.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const TEAMS: [&str; 6] = [
    "payments", "search", "identity", "billing", "catalog", "ledger",
];
/// Creation time of the first generated secret (2024-01-01T00:00:00Z).
const EPOCH: i64 = 1_704_067_200;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    /// Number of secrets.
    pub secrets: usize,
    /// Number of parameters (Parameter Store).
    pub parameters: usize,
    /// Seed of every draw (names are fixed by index; labels, tags, sizes, values by the seed).
    pub seed: u64,
    /// Mean size of a value in bytes (sizes vary from half to one and a half of it).
    pub value_bytes: usize,
}

impl Population {
    /// `secrets` secrets, `parameters` parameters, 1 KiB values, seed 11.
    pub fn new(secrets: usize, parameters: usize) -> Population {
        Population {
            secrets,
            parameters,
            seed: 11,
            value_bytes: 1024,
        }
    }
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    /// The version id (a UUID).
    pub id: String,
    /// Its staging labels (empty: deprecated).
    pub stages: Vec<String>,
    /// Creation time, epoch seconds.
    pub created: i64,
}

/// One secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its name.
    pub name: String,
    /// The six random characters AWS appends to the name in the ARN.
    pub suffix: String,
    /// Description, if any.
    pub description: Option<String>,
    /// A customer managed key, or `None` (aws/secretsmanager).
    pub kms_key_id: Option<String>,
    /// Tags, in order.
    pub tags: Vec<(String, String)>,
    /// Versions, oldest first.
    pub versions: Vec<SecretVersion>,
    /// Whether it has a resource policy.
    pub has_policy: bool,
    /// Rotation every this many days, if enabled.
    pub rotation_days: Option<i64>,
    /// Creation time, epoch seconds.
    pub created: i64,
    /// Last change (value, labels, metadata), epoch seconds.
    pub last_changed: i64,
    /// Size of its values in bytes.
    pub value_bytes: usize,
}

/// One version of a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterVersion {
    /// 1, 2, …
    pub version: i64,
    /// Its labels.
    pub labels: Vec<String>,
    /// When it was written, epoch seconds.
    pub modified: i64,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Its name, `/{env}/{service}/{leaf}`.
    pub name: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: &'static str,
    /// The KMS key of a SecureString.
    pub key_id: Option<String>,
    /// Description, if any.
    pub description: Option<String>,
    /// `Standard` or `Advanced`.
    pub tier: &'static str,
    /// Versions, oldest first.
    pub history: Vec<ParameterVersion>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// Everything the emulator serves.
#[derive(Debug, Default)]
pub struct World {
    /// Secrets in creation order.
    pub secrets: Vec<Secret>,
    /// Index of each secret by name.
    pub by_name: HashMap<String, usize>,
    /// Parameters sorted by name.
    pub parameters: Vec<Parameter>,
    seed: u64,
    clock: i64,
}

/// A version id (UUID text) drawn from `rng`.
fn uuid(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// FNV-1a: a stable hash of the seed and the parts of a value's identity.
fn fnv(seed: u64, parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl World {
    /// Generates `population`.
    pub fn generate(population: &Population) -> World {
        let mut rng = StdRng::seed_from_u64(population.seed);
        let mut world = World {
            seed: population.seed,
            clock: EPOCH + population.secrets as i64 + 86_400,
            ..World::default()
        };
        for i in 0..population.secrets {
            let (env, team) = (ENVS[i % 3], TEAMS[(i / 3) % TEAMS.len()]);
            let name = format!("{env}/{team}/svc-{i:06}");
            let created = EPOCH + i as i64;
            let suffix: String = (0..6)
                .map(|_| {
                    let c = rng.random_range(0..62u8);
                    (match c {
                        0..=9 => b'0' + c,
                        10..=35 => b'a' + c - 10,
                        _ => b'A' + c - 36,
                    }) as char
                })
                .collect();
            let mut versions = vec![];
            if rng.random_bool(0.6) {
                versions.push(SecretVersion {
                    id: uuid(&mut rng),
                    stages: vec!["AWSPREVIOUS".into()],
                    created,
                });
            }
            let mut current = vec!["AWSCURRENT".to_string()];
            if rng.random_bool(0.02) {
                current.push("blue".into());
            }
            versions.push(SecretVersion {
                id: uuid(&mut rng),
                stages: current,
                created: created + 60,
            });
            let mut tags = vec![("env".into(), env.into()), ("team".into(), team.into())];
            if rng.random_bool(0.3) {
                tags.push((
                    "cost-centre".into(),
                    format!("cc-{}", rng.random_range(100..999)),
                ));
            }
            let half = population.value_bytes / 2;
            world.by_name.insert(name.clone(), i);
            world.secrets.push(Secret {
                description: rng
                    .random_bool(0.5)
                    .then(|| format!("{team} service credentials ({env})")),
                kms_key_id: rng
                    .random_bool(0.2)
                    .then(|| format!("arn:aws:kms:us-east-1:123456789012:key/{}", uuid(&mut rng))),
                tags,
                versions,
                has_policy: rng.random_bool(0.1),
                rotation_days: rng.random_bool(0.3).then_some(30),
                created,
                last_changed: created + 60,
                value_bytes: half + rng.random_range(0..=population.value_bytes.max(1)),
                name,
                suffix,
            });
        }
        const LEAVES: [(&str, &str); 5] = [
            ("db_url", "String"),
            ("db_password", "SecureString"),
            ("api_key", "SecureString"),
            ("feature_flags", "StringList"),
            ("endpoint", "String"),
        ];
        for i in 0..population.parameters {
            let (leaf, kind) = LEAVES[i % LEAVES.len()];
            let service = i / LEAVES.len();
            let env = ENVS[service % 3];
            let name = format!("/{env}/svc-{service:05}/{leaf}");
            let versions = rng.random_range(1..=3);
            let history = (1..=versions)
                .map(|v| ParameterVersion {
                    version: v,
                    labels: if v == versions - 1 {
                        vec!["stable".into()]
                    } else {
                        vec![]
                    },
                    modified: EPOCH + (i as i64) * 10 + v,
                })
                .collect();
            world.parameters.push(Parameter {
                name,
                kind,
                key_id: (kind == "SecureString").then(|| "alias/aws/ssm".to_string()),
                description: rng
                    .random_bool(0.5)
                    .then(|| format!("{leaf} of svc-{service:05}")),
                tier: if rng.random_bool(0.1) {
                    "Advanced"
                } else {
                    "Standard"
                },
                history,
                tags: vec![("env".into(), env.into())],
            });
        }
        world.parameters.sort_by(|a, b| a.name.cmp(&b.name));
        world
    }

    /// The value of version `version_id` of the secret at `index`: a JSON document of the
    /// secret's size, the same on every read, different for every version.
    pub fn secret_value(&self, index: usize, version_id: &str) -> String {
        let secret = &self.secrets[index];
        let h = fnv(self.seed, &[&secret.name, version_id]);
        let mut rng = StdRng::seed_from_u64(h);
        let password: String = (0..32)
            .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
            .collect();
        let head =
            format!("{{\"username\":\"svc-{index}\",\"password\":\"{password}\",\"padding\":\"");
        let pad = secret.value_bytes.saturating_sub(head.len() + 2);
        format!("{head}{}\"}}", "x".repeat(pad))
    }

    /// The value of `version` of the parameter at `index` (decrypted for a SecureString).
    pub fn parameter_value(&self, index: usize, version: i64) -> String {
        let p = &self.parameters[index];
        let h = fnv(self.seed, &[&p.name, &version.to_string()]);
        match p.kind {
            "StringList" => format!("a{},b{},c{}", h % 7, h % 11, h % 13),
            _ => format!(
                "{}-v{version}-{h:016x}",
                p.name.rsplit('/').next().unwrap_or("")
            ),
        }
    }

    /// What Parameter Store answers for a SecureString read without decryption: opaque
    /// ciphertext text.
    pub fn parameter_ciphertext(&self, index: usize, version: i64) -> String {
        let p = &self.parameters[index];
        format!(
            "AQICAHh{:016x}{:016x}",
            fnv(self.seed ^ 1, &[&p.name, &version.to_string()]),
            fnv(self.seed ^ 2, &[&p.name])
        )
    }

    /// Changes `share` (0.0 to 1.0, rounded up) of the secrets, chosen with `seed`: a new
    /// version becomes AWSCURRENT, the old current AWSPREVIOUS, the old previous loses its
    /// label (kept, deprecated), the last-changed date moves. Returns the names changed.
    pub fn mutate(&mut self, share: f64, seed: u64) -> Vec<String> {
        let n = self.secrets.len();
        let k = ((n as f64) * share).ceil() as usize;
        let mut rng = StdRng::seed_from_u64(seed);
        self.clock += 3_600;
        let now = self.clock;
        let mut changed = vec![];
        for i in sample(&mut rng, n, k.min(n)).into_iter() {
            let id = uuid(&mut rng);
            let secret = &mut self.secrets[i];
            for v in &mut secret.versions {
                let was_current = v.stages.iter().any(|s| s == "AWSCURRENT");
                v.stages.retain(|s| s != "AWSPREVIOUS" && s != "AWSCURRENT");
                if was_current {
                    v.stages.push("AWSPREVIOUS".into());
                }
            }
            secret.versions.push(SecretVersion {
                id,
                stages: vec!["AWSCURRENT".into()],
                created: now,
            });
            secret.last_changed = now;
            changed.push(secret.name.clone());
        }
        changed.sort();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_every_secret_has_one_current_version() {
        let a = World::generate(&Population::new(500, 50));
        let b = World::generate(&Population::new(500, 50));
        assert_eq!(a.secrets, b.secrets);
        assert_eq!(
            a.secret_value(7, &a.secrets[7].versions[0].id),
            b.secret_value(7, &b.secrets[7].versions[0].id)
        );
        for (i, s) in a.secrets.iter().enumerate() {
            let current: Vec<_> = s
                .versions
                .iter()
                .filter(|v| v.stages.iter().any(|l| l == "AWSCURRENT"))
                .collect();
            assert_eq!(current.len(), 1, "{}", s.name);
            let value = a.secret_value(i, &current[0].id);
            assert_eq!(value.len(), s.value_bytes, "{}", s.name);
            assert!(serde_json::from_str::<serde_json::Value>(&value).is_ok());
        }
        assert!(a.secrets.iter().any(|s| s.versions.len() == 2));
        assert!(a.secrets.iter().any(|s| s.has_policy));
        assert!(a.parameters.windows(2).all(|w| w[0].name < w[1].name));
        assert!(a.parameters.iter().any(|p| p.kind == "SecureString"));
    }

    #[test]
    fn mutation_changes_the_share_asked_and_moves_the_labels() {
        let mut world = World::generate(&Population::new(1000, 0));
        let before = world.secrets.clone();
        let changed = world.mutate(0.01, 5);
        assert_eq!(changed.len(), 10);
        let again = World::generate(&Population::new(1000, 0)).mutate(0.01, 5);
        assert_eq!(changed, again, "the same seed changes the same secrets");
        let mut differing = 0;
        for (old, new) in before.iter().zip(&world.secrets) {
            if old == new {
                continue;
            }
            differing += 1;
            assert!(changed.contains(&new.name));
            assert!(new.last_changed > old.last_changed);
            let new_current = new.versions.last().unwrap();
            assert_eq!(new_current.stages, ["AWSCURRENT"]);
            let old_current = old
                .versions
                .iter()
                .find(|v| v.stages.iter().any(|s| s == "AWSCURRENT"))
                .unwrap();
            let moved = new
                .versions
                .iter()
                .find(|v| v.id == old_current.id)
                .unwrap();
            assert!(moved.stages.contains(&"AWSPREVIOUS".to_string()));
            assert_eq!(
                new.versions
                    .iter()
                    .filter(|v| v.stages.iter().any(|s| s == "AWSPREVIOUS"))
                    .count(),
                1
            );
        }
        assert_eq!(differing, 10);
    }
}

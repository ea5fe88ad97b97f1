//! Reads a CTranslate2 model file (`model.bin`, binary version 6): a header (version, spec
//! name, revision), then named variables, each with its rank, dimensions, data type and raw
//! little-endian bytes, then aliases (`decoder/projection/weight` → the embeddings).
//! Only what the Whisper conversion needs: float16/float32 tensors and small scalars.
use std::collections::BTreeMap;

use super::AsrError;

/// CTranslate2's data type ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Type {
    /// 32-bit float.
    F32,
    /// 8-bit integer (also flags).
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl Ct2Type {
    fn from_id(id: u8) -> Option<(Self, usize)> {
        Some(match id {
            0 => (Self::F32, 4),
            1 => (Self::I8, 1),
            2 => (Self::I16, 2),
            3 => (Self::I32, 4),
            4 => (Self::F16, 2),
            5 => (Self::Bf16, 2),
            _ => return None,
        })
    }
}

/// One variable of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Ct2Tensor {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Element type.
    pub dtype: Ct2Type,
    /// Raw little-endian bytes.
    pub bytes: Vec<u8>,
}

impl Ct2Tensor {
    /// The values as `f32` (float16/bfloat16/float32 only).
    pub fn to_f32(&self) -> Result<Vec<f32>, AsrError> {
        let b = &self.bytes;
        Ok(match self.dtype {
            Ct2Type::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Ct2Type::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Ct2Type::Bf16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(AsrError::Model(format!(
                    "expected a float tensor, found {other:?}"
                )))
            }
        })
    }

    /// The first value as an integer (scalars such as `encoder/num_heads`).
    pub fn scalar(&self) -> Option<i64> {
        let b = &self.bytes;
        match self.dtype {
            Ct2Type::I8 => b.first().map(|&v| i64::from(v as i8)),
            Ct2Type::I16 => (b.len() >= 2).then(|| i64::from(i16::from_le_bytes([b[0], b[1]]))),
            Ct2Type::I32 => {
                (b.len() >= 4).then(|| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            _ => None,
        }
    }
}

/// A CTranslate2 model: its spec name and variables by name (aliases resolved).
#[derive(Debug, Clone)]
pub struct Ct2Model {
    /// The spec, e.g. `WhisperSpec`.
    pub spec: String,
    /// Variables by name.
    pub tensors: BTreeMap<String, Ct2Tensor>,
}

impl Ct2Model {
    /// A variable by name, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Ct2Tensor, AsrError> {
        self.tensors
            .get(name)
            .ok_or_else(|| AsrError::Model(format!("the CTranslate2 model has no {name}")))
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AsrError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| {
            AsrError::Model(format!("model.bin is truncated at byte {}", self.at))
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, AsrError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, AsrError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, AsrError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// A length-prefixed, NUL-terminated UTF-8 string.
    fn string(&mut self) -> Result<String, AsrError> {
        let n = usize::from(self.u16()?);
        let s = self.take(n)?;
        let s = s.strip_suffix(&[0]).unwrap_or(s);
        String::from_utf8(s.to_vec())
            .map_err(|_| AsrError::Model("model.bin has a name that is not UTF-8".into()))
    }
}

/// Parses the bytes of a CTranslate2 `model.bin`.
pub fn parse_ct2(bytes: &[u8]) -> Result<Ct2Model, AsrError> {
    let mut c = Cursor { b: bytes, at: 0 };
    let version = c.u32()?;
    if version != 6 {
        return Err(AsrError::Model(format!(
            "CTranslate2 binary version {version}; this reader takes version 6"
        )));
    }
    let spec = c.string()?;
    let _revision = c.u32()?;
    let count = c.u32()?;
    let mut tensors = BTreeMap::new();
    for _ in 0..count {
        let name = c.string()?;
        let rank = c.u8()?;
        let dims = (0..rank)
            .map(|_| c.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let id = c.u8()?;
        let (dtype, width) = Ct2Type::from_id(id)
            .ok_or_else(|| AsrError::Model(format!("{name}: unknown data type id {id}")))?;
        let n_bytes = c.u32()? as usize;
        let elements: usize = dims.iter().product();
        if n_bytes != elements * width {
            return Err(AsrError::Model(format!(
                "{name}: {n_bytes} bytes for dimensions {dims:?} of {dtype:?}"
            )));
        }
        let bytes = c.take(n_bytes)?.to_vec();
        tensors.insert(name, Ct2Tensor { dims, dtype, bytes });
    }
    let aliases = c.u32()?;
    for _ in 0..aliases {
        let (alias, target) = (c.string()?, c.string()?);
        let t = tensors
            .get(&target)
            .cloned()
            .ok_or_else(|| AsrError::Model(format!("alias {alias} of a missing {target}")))?;
        tensors.insert(alias, t);
    }
    Ok(Ct2Model { spec, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn variables_and_aliases_are_read_and_truncation_is_an_error() {
        let mut b = 6u32.to_le_bytes().to_vec();
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        string(&mut b, "w");
        b.push(2);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.push(4);
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&half::f16::from_f32(1.5).to_le_bytes());
        b.extend_from_slice(&half::f16::from_f32(-2.0).to_le_bytes());
        string(&mut b, "heads");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "alias");
        string(&mut b, "w");
        let m = parse_ct2(&b).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.get("alias").unwrap().to_f32().unwrap(), vec![1.5, -2.0]);
        assert_eq!(m.get("w").unwrap().dims, vec![1, 2]);
        assert_eq!(m.get("heads").unwrap().scalar(), Some(6));
        assert!(parse_ct2(&b[..b.len() - 3]).is_err());
        assert!(m.get("nothing").is_err());
    }
}

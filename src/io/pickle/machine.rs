//! The pickle virtual machine: a stack, a mark stack and a memo.

use std::collections::HashMap;

use super::{
    measure, resolve_global, Global, PickleError, StorageRef, StorageView, TensorRef, Value,
};
use super::{MAX_DEPTH, MAX_LINE};

/// Pickle opcodes (names as in CPython's pickletools).
mod op {
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const BINBYTES: u8 = b'B';
    pub const BINBYTES8: u8 = 0x8e;
    pub const BINFLOAT: u8 = b'G';
    pub const BINGET: u8 = b'h';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const BINPERSID: u8 = b'Q';
    pub const BINPUT: u8 = b'q';
    pub const BINSTRING: u8 = b'T';
    pub const BINUNICODE: u8 = b'X';
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BUILD: u8 = b'b';
    pub const BYTEARRAY8: u8 = 0x96;
    pub const DICT: u8 = b'd';
    pub const DUP: u8 = b'2';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const FRAME: u8 = 0x95;
    pub const GLOBAL: u8 = b'c';
    pub const LIST: u8 = b'l';
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const LONG_BINGET: u8 = b'j';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MARK: u8 = b'(';
    pub const MEMOIZE: u8 = 0x94;
    pub const NEWFALSE: u8 = 0x89;
    pub const NEWOBJ: u8 = 0x81;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const NEWTRUE: u8 = 0x88;
    pub const NONE: u8 = b'N';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const PROTO: u8 = 0x80;
    pub const REDUCE: u8 = b'R';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const STOP: u8 = b'.';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85; // TUPLE2 and TUPLE3 follow
    pub const TUPLE3: u8 = 0x87;
}

/// Unpickles one pickle starting at `buf[start]`. Returns the value and the
/// offset just past its STOP opcode. Error offsets are offsets into `buf`.
pub fn unpickle(buf: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    let remaining = buf.len().saturating_sub(start);
    let mut u = Unpickler {
        buf,
        pos: start,
        op_at: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        // Generous for real files (about one unit per opcode), but keeps
        // memo-copy amplification linear in the input size.
        budget: remaining.saturating_mul(16).saturating_add(1 << 20),
    };
    let v = u.run()?;
    Ok((v, u.pos))
}

struct Unpickler<'a> {
    buf: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    budget: usize,
}

impl<'a> Unpickler<'a> {
    fn invalid<T>(&self, msg: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Invalid {
            offset: self.op_at,
            msg: msg.into(),
        })
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        let left = (self.buf.len() - self.pos.min(self.buf.len())) as u64;
        if n > left {
            return Err(PickleError::Truncated {
                offset: self.op_at,
                needed: n - left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.arr::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let end = rest.iter().take(MAX_LINE + 1).position(|&b| b == b'\n');
        let Some(end) = end else {
            return if rest.len() <= MAX_LINE {
                Err(PickleError::Truncated {
                    offset: self.op_at,
                    needed: 1,
                })
            } else {
                self.invalid("GLOBAL name line too long")
            };
        };
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| PickleError::Invalid {
            offset: self.op_at,
            msg: "GLOBAL name is not UTF-8".into(),
        })?;
        self.pos += end + 1;
        Ok(s.to_string())
    }

    fn string(&mut self, n: u64) -> Result<Value, PickleError> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.to_string())),
            Err(_) => self.invalid("string is not valid UTF-8"),
        }
    }

    fn charge(&mut self, units: usize) -> Result<(), PickleError> {
        self.budget = self.budget.checked_sub(units).ok_or(PickleError::Limit {
            what: "work",
            offset: self.op_at,
        })?;
        Ok(())
    }

    /// Pushes a value; `children` of a new container are depth-checked.
    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        let (w, d) = measure(&v);
        if d > MAX_DEPTH {
            return Err(PickleError::Limit {
                what: "nesting depth",
                offset: self.op_at,
            });
        }
        self.charge(w.min(8))?; // fresh values were already paid for by their bytes
        self.stack.push(v);
        Ok(())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return self.invalid("stack underflow");
        }
        self.stack.pop().ok_or(PickleError::Invalid {
            offset: self.op_at,
            msg: "stack underflow".into(),
        })
    }

    fn top_mut(&mut self) -> Result<&mut Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return self.invalid("stack underflow");
        }
        let at = self.op_at;
        self.stack.last_mut().ok_or(PickleError::Invalid {
            offset: at,
            msg: "stack underflow".into(),
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.invalid("no MARK on the stack");
        };
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, PickleError> {
        if self.stack.len() < self.floor() + n {
            return self.invalid("stack underflow");
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    /// Adds items to the list or dict on top of the stack.
    fn extend_top(&mut self, items: Vec<Value>, dict: bool) -> Result<(), PickleError> {
        let (w, d) = items
            .iter()
            .map(measure)
            .fold((0, 0), |(w, d), (iw, id)| (w + iw, d.max(id)));
        if d + 1 > MAX_DEPTH {
            return Err(PickleError::Limit {
                what: "nesting depth",
                offset: self.op_at,
            });
        }
        self.charge(items.len().min(w))?;
        if dict && !items.len().is_multiple_of(2) {
            return self.invalid("SETITEMS with an odd number of items");
        }
        match (self.top_mut()?, dict) {
            (Value::List(l), false) => l.extend(items),
            (Value::Dict(m), true) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
            }
            (other, _) => {
                let kind = other.kind();
                return self.invalid(format!("cannot add items to a {kind}"));
            }
        }
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let v = self.top_copy()?;
        self.memo.insert(index, v);
        Ok(())
    }

    /// A paid-for copy of the top of the stack (for the memo and DUP).
    fn top_copy(&mut self) -> Result<Value, PickleError> {
        let w = measure(self.top_mut()?).0;
        self.charge(w)?;
        Ok(self.top_mut()?.clone())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let Some(w) = self.memo.get(&index).map(|v| measure(v).0) else {
            return Err(PickleError::BadMemo {
                index,
                offset: self.op_at,
            });
        };
        // Pay before copying so a huge memo entry cannot be cloned for free.
        self.charge(w)?;
        self.stack.extend(self.memo.get(&index).cloned());
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                op::PROTO => {
                    if self.u8()? > 5 {
                        return self.invalid("pickle protocol above 5");
                    }
                }
                op::FRAME => {
                    // FRAME: a buffering hint; the framed opcodes follow inline.
                    self.u64()?;
                }
                op::STOP => return self.pop(),
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    self.pop()?;
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let v = self.top_copy()?;
                    self.stack.push(v);
                }
                op::NONE => self.push(Value::None)?,
                op::NEWTRUE => self.push(Value::Bool(true))?,
                op::NEWFALSE => self.push(Value::Bool(false))?,
                op::BININT => {
                    let v = i32::from_le_bytes(self.arr()?);
                    self.push(Value::Int(v as i64))?
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.arr()?);
                    self.push(Value::Int(v as i64))?
                }
                op::LONG1 | op::LONG4 => {
                    let n = if op == op::LONG1 {
                        self.u8()? as u64
                    } else {
                        self.u32()? as u64
                    };
                    let bytes = self.take(n)?;
                    self.charge(bytes.len() / 8)?;
                    self.push(long_value(bytes))?
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.arr()?);
                    self.push(Value::Float(v))?
                }
                op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => {
                    let n = match op {
                        op::BINUNICODE => self.u32()? as u64,
                        op::SHORT_BINUNICODE => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let s = self.string(n)?;
                    self.charge(n as usize / 8)?;
                    self.push(s)?
                }
                op::BINSTRING | op::SHORT_BINSTRING => {
                    // Python 2 str: decode as text when it is UTF-8.
                    let n = if op == op::BINSTRING {
                        self.u32()? as u64
                    } else {
                        self.u8()? as u64
                    };
                    let b = self.take(n)?;
                    self.charge(b.len() / 8)?;
                    let v = match std::str::from_utf8(b) {
                        Ok(s) => Value::Str(s.to_string()),
                        Err(_) => Value::Bytes(b.to_vec()),
                    };
                    self.push(v)?
                }
                op::BINBYTES | op::SHORT_BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = match op {
                        op::BINBYTES => self.u32()? as u64,
                        op::SHORT_BINBYTES => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.charge(b.len() / 8)?;
                    self.push(Value::Bytes(b))?
                }
                op::EMPTY_TUPLE => self.push(Value::Tuple(Vec::new()))?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                op::TUPLE1..=op::TUPLE3 => {
                    let items = self.pop_n((op - op::TUPLE1 + 1) as usize)?;
                    self.push(Value::Tuple(items))?
                }
                op::EMPTY_LIST => self.push(Value::List(Vec::new()))?,
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.extend_top(vec![v], false)?
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, false)?
                }
                op::EMPTY_DICT => self.push(Value::Dict(Vec::new()))?,
                op::DICT => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()))?;
                    self.extend_top(items, true)?
                }
                op::SETITEM => {
                    let kv = self.pop_n(2)?;
                    self.extend_top(kv, true)?
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, true)?
                }
                op::BINPUT => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                op::LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                op::MEMOIZE => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| PickleError::Limit {
                        what: "memo size",
                        offset: self.op_at,
                    })?;
                    self.memo_put(i)?
                }
                op::BINGET => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                op::LONG_BINGET => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = resolve_global(&module, &name)?;
                    self.push(Value::Global(g))?
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (module.as_str(), name.as_str()) else {
                        return self.invalid("STACK_GLOBAL needs two strings");
                    };
                    let g = resolve_global(m, n)?;
                    self.push(Value::Global(g))?
                }
                op::REDUCE | op::NEWOBJ | op::NEWOBJ_EX => {
                    // Calls, but only of whitelisted globals (see `call`).
                    if op == op::NEWOBJ_EX {
                        let kwargs = self.pop()?;
                        if !matches!(&kwargs, Value::Dict(d) if d.is_empty()) {
                            return self.invalid("NEWOBJ_EX with keyword arguments");
                        }
                    }
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.call(func, args)?;
                    self.push(v)?
                }
                op::BUILD => {
                    // BUILD: OrderedDict attributes (torch's `_metadata`) and
                    // Parameter state carry nothing we need.
                    let _state = self.pop()?;
                    match self.top_mut()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => {
                            let kind = other.kind();
                            return self.invalid(format!("BUILD on a {kind}"));
                        }
                    }
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let s = self.persistent_storage(pid)?;
                    self.push(Value::Storage(s))?
                }
                _ => {
                    return Err(PickleError::UnsupportedOpcode {
                        op,
                        offset: self.op_at,
                    })
                }
            }
        }
    }

    fn call(&self, func: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(g) = func else {
            return self.invalid(format!(
                "REDUCE on a {}, not a whitelisted global",
                func.kind()
            ));
        };
        let Value::Tuple(args) = args else {
            return self.invalid("REDUCE arguments are not a tuple");
        };
        match g {
            Global::OrderedDict => match args.into_iter().next() {
                None => Ok(Value::Dict(Vec::new())),
                // OrderedDict([[k, v], ...]) from protocol-0/1 writers.
                Some(Value::List(pairs)) | Some(Value::Tuple(pairs)) => {
                    let mut out = Vec::with_capacity(pairs.len());
                    for p in pairs {
                        match p {
                            Value::List(kv) | Value::Tuple(kv) if kv.len() == 2 => {
                                let mut it = kv.into_iter();
                                if let (Some(k), Some(v)) = (it.next(), it.next()) {
                                    out.push((k, v));
                                }
                            }
                            _ => return self.invalid("OrderedDict item is not a pair"),
                        }
                    }
                    Ok(Value::Dict(out))
                }
                Some(other) => self.invalid(format!("OrderedDict({})", other.kind())),
            },
            Global::RebuildTensor | Global::RebuildTensorV2 => self.rebuild_tensor(args),
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                match args.into_iter().next() {
                    Some(t @ Value::Tensor(_)) => Ok(t),
                    _ => self.invalid("_rebuild_parameter without a tensor"),
                }
            }
            Global::Storage(_) => self.invalid("storage types cannot be called"),
        }
    }

    /// `_rebuild_tensor(storage, offset, size, stride, ...)`; the v2 extras
    /// (requires_grad, hooks, metadata) are irrelevant for loading weights.
    fn rebuild_tensor(&self, args: Vec<Value>) -> Result<Value, PickleError> {
        let [Value::Storage(storage), offset, size, stride, ..] = args.as_slice() else {
            return self.invalid("_rebuild_tensor needs (storage, offset, size, stride)");
        };
        let dims = |v: &Value, what: &str| -> Result<Vec<usize>, PickleError> {
            let (Value::Tuple(items) | Value::List(items)) = v else {
                return self.invalid(format!("tensor {what} is a {}", v.kind()));
            };
            items
                .iter()
                .map(|x| match x.as_int().map(usize::try_from) {
                    Some(Ok(n)) => Ok(n),
                    _ => self.invalid(format!("tensor {what} has a bad entry")),
                })
                .collect()
        };
        let shape = dims(size, "size")?;
        let stride = dims(stride, "stride")?;
        if shape.len() != stride.len() {
            return self.invalid("tensor size and stride differ in length");
        }
        let Some(Ok(offset)) = offset.as_int().map(usize::try_from) else {
            return self.invalid("tensor storage offset is not a non-negative int");
        };
        Ok(Value::Tensor(TensorRef {
            storage: storage.clone(),
            offset,
            shape,
            stride,
        }))
    }

    /// `('storage', type, key, location, numel[, view_metadata])`.
    fn persistent_storage(&self, pid: Value) -> Result<StorageRef, PickleError> {
        let bad = |what: &str| self.invalid::<StorageRef>(format!("persistent id: {what}"));
        let Value::Tuple(items) = pid else {
            return bad("not a tuple");
        };
        let [tag, Value::Global(Global::Storage(dtype)), key, location, numel, rest @ ..] =
            items.as_slice()
        else {
            return bad("expected ('storage', <torch storage type>, key, location, numel)");
        };
        if tag.as_str() != Some("storage") {
            return bad("only 'storage' records are supported");
        }
        let key = match key {
            Value::Int(i) => i.to_string(),
            k => match k.as_str() {
                Some(s) => s.to_string(),
                None => return bad("storage key is not a string"),
            },
        };
        let Some(location) = location.as_str() else {
            return bad("location is not a string");
        };
        let Some(Ok(numel)) = numel.as_int().map(u64::try_from) else {
            return bad("numel is not a non-negative int");
        };
        let view = match rest {
            [] | [Value::None] => None,
            [Value::Tuple(v)] => match v.as_slice() {
                [k, off, n] => match (k.as_str(), off.as_int(), n.as_int()) {
                    (Some(k), Some(off), Some(n)) if off >= 0 && n >= 0 => Some(StorageView {
                        key: k.to_string(),
                        offset: off as u64,
                        numel: n as u64,
                    }),
                    _ => return bad("malformed view metadata"),
                },
                _ => return bad("malformed view metadata"),
            },
            _ => return bad("too many fields"),
        };
        Ok(StorageRef {
            dtype: *dtype,
            key,
            location: location.to_string(),
            numel,
            view,
        })
    }
}

/// LONG1/LONG4 payload: little-endian two's complement.
fn long_value(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    if bytes.last().is_some_and(|&x| x & 0x80 != 0) {
        b[bytes.len()..].fill(0xff);
    }
    Value::Int(i64::from_le_bytes(b))
}

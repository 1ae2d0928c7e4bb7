//! Hand-written pickles, including hostile ones.

use super::*;

/// Tiny pickle writer for tests (protocol 2 opcodes).
#[derive(Default)]
pub(crate) struct P(pub Vec<u8>);

impl P {
    pub fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn s(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn int(&mut self, i: i32) -> &mut Self {
        self.0.push(b'J');
        self.0.extend_from_slice(&i.to_le_bytes());
        self
    }
    pub fn global(&mut self, m: &str, n: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{m}\n{n}\n").as_bytes());
        self
    }
    pub fn ints(&mut self, v: &[i32]) -> &mut Self {
        self.op(b"(");
        for &i in v {
            self.int(i);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(pid(storage...), offset, shape, stride, False, OrderedDict())`
    #[allow(clippy::too_many_arguments)]
    pub fn tensor(
        &mut self,
        storage_type: &str,
        key: &str,
        numel: i32,
        view: Option<(&str, i32, i32)>,
        offset: i32,
        shape: &[i32],
        stride: &[i32],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.s("storage")
            .global("torch", storage_type)
            .s(key)
            .s("cpu")
            .int(numel);
        if let Some((k, o, n)) = view {
            self.op(b"(").s(k).int(o).int(n).op(b"t");
        }
        self.op(b"tQ").int(offset).ints(shape).ints(stride);
        self.op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
}

fn run(b: &[u8]) -> Result<Value, PickleError> {
    unpickle(b, 0).map(|(v, _)| v)
}

#[test]
fn dict_of_ints_and_strings() {
    let mut p = P::default();
    p.op(b"\x80\x02}q\x00(")
        .s("a")
        .op(b"K\x07")
        .s("b")
        .s("text")
        .s("neg")
        .int(-3);
    p.op(b"\x8c\x04long\x8a\x02\x00\x80")
        .s("f")
        .op(b"G\x3f\xf8\x00\x00\x00\x00\x00\x00");
    p.op(b"u.");
    let v = run(&p.0).unwrap();
    assert_eq!(v.get("a"), Some(&Value::Int(7)));
    assert_eq!(v.get("b"), Some(&Value::Str("text".into())));
    assert_eq!(v.get("neg"), Some(&Value::Int(-3)));
    assert_eq!(v.get("long"), Some(&Value::Int(-32768)));
    assert_eq!(v.get("f"), Some(&Value::Float(1.5)));
}

#[test]
fn memo_put_and_get() {
    let mut p = P::default();
    p.op(b"\x80\x02]q\x05").s("x").op(b"r\x10\x00\x00\x00a");
    p.op(b"h\x05"); // the list as memoized (empty at that time)
    p.op(b"j\x10\x00\x00\x00\x86a.");
    let v = run(&p.0).unwrap();
    assert_eq!(
        v,
        Value::List(vec![
            Value::Str("x".into()),
            Value::Tuple(vec![Value::List(vec![]), Value::Str("x".into())]),
        ])
    );
}

#[test]
fn refuses_os_system() {
    let mut p = P::default();
    p.op(b"\x80\x02")
        .global("os", "system")
        .s("echo pwned")
        .op(b"\x85R.");
    let e = run(&p.0).unwrap_err();
    assert_eq!(
        e,
        PickleError::UnsafeGlobal {
            module: "os".into(),
            name: "system".into()
        }
    );
    let mut p = P::default();
    p.op(b"\x80\x02").global("posix", "system").op(b".");
    assert!(matches!(run(&p.0), Err(PickleError::UnsafeGlobal { .. })));
}

#[test]
fn refuses_builtins_eval_via_stack_global() {
    let mut p = P::default();
    p.op(b"\x80\x04\x95\x30\x00\x00\x00\x00\x00\x00\x00");
    p.op(b"\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94")
        .s("1+1")
        .op(b"\x85R.");
    let e = run(&p.0).unwrap_err();
    assert_eq!(
        e,
        PickleError::UnsafeGlobal {
            module: "builtins".into(),
            name: "eval".into()
        }
    );
}

#[test]
fn reduce_on_non_global_is_refused() {
    let mut p = P::default();
    p.op(b"\x80\x02").s("os.system").op(b")R.");
    assert!(matches!(run(&p.0), Err(PickleError::Invalid { .. })));
}

#[test]
fn truncated_input() {
    let mut p = P::default();
    p.op(b"\x80\x02}(").s("abc").op(b"X\xff\x00\x00\x00ab");
    assert!(matches!(
        run(&p.0),
        Err(PickleError::Truncated {
            offset: 12,
            needed: 253
        })
    ));
    // Missing STOP.
    assert!(matches!(
        run(b"\x80\x02N"),
        Err(PickleError::Truncated { .. })
    ));
    // Huge length is rejected before allocating.
    let e = run(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.").unwrap_err();
    assert!(matches!(e, PickleError::Truncated { .. }));
}

#[test]
fn bad_memo_index() {
    let e = run(b"\x80\x02N\x8a\x00h\x03.").unwrap_err();
    assert_eq!(
        e,
        PickleError::BadMemo {
            index: 3,
            offset: 5
        }
    );
    let e = run(b"\x80\x02j\xff\xff\xff\xff.").unwrap_err();
    assert!(matches!(
        e,
        PickleError::BadMemo {
            index: u32::MAX,
            ..
        }
    ));
}

#[test]
fn unsupported_opcode_and_underflow() {
    let e = run(b"\x80\x02Vabc\n.").unwrap_err();
    assert_eq!(
        e,
        PickleError::UnsupportedOpcode {
            op: b'V',
            offset: 2
        }
    );
    assert!(matches!(
        run(b"\x80\x02(\x85."),
        Err(PickleError::Invalid { .. })
    ));
    assert!(matches!(
        run(b"\x80\x02t."),
        Err(PickleError::Invalid { .. })
    ));
}

#[test]
fn nesting_and_memo_blowup_are_bounded() {
    let mut deep = b"\x80\x02)".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 10_000));
    deep.push(b'.');
    assert!(matches!(
        run(&deep),
        Err(PickleError::Limit {
            what: "nesting depth",
            ..
        })
    ));
    // Doubling a list via memo: [x], then t = (m, m), memoized, repeat.
    let mut p = P::default();
    p.op(b"\x80\x02]").s(&"x".repeat(1000)).op(b"aq\x00");
    for _ in 0..60 {
        p.op(b"h\x00h\x00\x86q\x00");
    }
    p.op(b".");
    assert!(matches!(run(&p.0), Err(PickleError::Limit { .. })));
}

#[test]
fn rebuilds_tensor_from_persistent_id() {
    let mut p = P::default();
    p.op(b"\x80\x02");
    p.tensor("FloatStorage", "7", 12, None, 2, &[2, 3], &[1, 2]);
    p.op(b".");
    let Value::Tensor(t) = run(&p.0).unwrap() else {
        panic!("not a tensor")
    };
    assert_eq!(t.storage.dtype, DType::F32);
    assert_eq!(t.storage.key, "7");
    assert_eq!((t.offset, t.shape, t.stride), (2, vec![2, 3], vec![1, 2]));
    // An unknown storage type is its own error.
    let mut p = P::default();
    p.op(b"\x80\x02")
        .global("torch", "ComplexFloatStorage")
        .op(b".");
    assert!(matches!(
        run(&p.0),
        Err(PickleError::UnknownStorageType { .. })
    ));
}

//! Spatial zero padding of a window op (conv, pool), possibly different on each side: ONNX's
//! explicit `pads` and the odd totals of `auto_pad` SAME put the extra row/column at one end.

use serde::{Deserialize, Serialize};

/// Padding per side. Stored in graphs as one number when all four sides agree (as every graph
/// written before asymmetric padding existed), else as ONNX's `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct Pads {
    /// Before the first row / column: [top, left].
    pub begin: [usize; 2],
    /// After the last row / column: [bottom, right].
    pub end: [usize; 2],
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Same(usize),
    Sides([usize; 4]),
}

impl From<Stored> for Pads {
    fn from(s: Stored) -> Pads {
        match s {
            Stored::Same(p) => Pads::same(p),
            Stored::Sides(s) => Pads::from_onnx(s),
        }
    }
}

impl From<Pads> for Stored {
    fn from(p: Pads) -> Stored {
        match p.symmetric() {
            Some(s) => Stored::Same(s),
            None => Stored::Sides(p.onnx()),
        }
    }
}

impl From<usize> for Pads {
    fn from(p: usize) -> Pads {
        Pads::same(p)
    }
}

impl Pads {
    /// `p` on every side.
    pub const fn same(p: usize) -> Pads {
        Pads {
            begin: [p; 2],
            end: [p; 2],
        }
    }

    /// From ONNX order `[top, left, bottom, right]`.
    pub const fn from_onnx([t, l, b, r]: [usize; 4]) -> Pads {
        Pads {
            begin: [t, l],
            end: [b, r],
        }
    }

    /// ONNX order `[top, left, bottom, right]`.
    pub const fn onnx(&self) -> [usize; 4] {
        [self.begin[0], self.begin[1], self.end[0], self.end[1]]
    }

    /// The padding when all four sides agree.
    pub fn symmetric(&self) -> Option<usize> {
        let [t, l, b, r] = self.onnx();
        (t == l && t == b && t == r).then_some(t)
    }

    /// Both sides of one axis (0: H, 1: W) added, or None on overflow.
    pub fn total(&self, axis: usize) -> Option<usize> {
        self.begin[axis].checked_add(self.end[axis])
    }

    /// Each side plus `other`'s.
    pub fn plus(&self, other: Pads) -> Option<Pads> {
        let [a, b] = [self.onnx(), other.onnx()];
        let mut s = [0; 4];
        for i in 0..4 {
            s[i] = a[i].checked_add(b[i])?;
        }
        Some(Pads::from_onnx(s))
    }
}

impl std::fmt::Display for Pads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.symmetric() {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "{:?} (top, left, bottom, right)", self.onnx()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_as_a_number_when_symmetric_and_old_graphs_read() {
        assert_eq!(serde_json::to_string(&Pads::same(2)).unwrap(), "2");
        let p = Pads::from_onnx([0, 1, 1, 2]);
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(s, "[0,1,1,2]");
        assert_eq!(serde_json::from_str::<Pads>(&s).unwrap(), p);
        assert_eq!(serde_json::from_str::<Pads>("3").unwrap(), Pads::same(3));
        assert!(serde_json::from_str::<Pads>("[1,2]").is_err());
    }

    /// Graph nodes as files stored before per-side padding and dilated pooling read, and a
    /// symmetric node is written as before.
    #[test]
    fn old_graph_nodes_read() {
        use crate::graph::Op;
        let old = r#"{"MaxPool":{"kernel":3,"stride":2,"pad":1}}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        let win = op.pool_window().unwrap();
        assert_eq!((win.pads, win.dilation), (Pads::same(1), [1, 1]));
        assert_eq!(serde_json::to_string(&op).unwrap(), old);
        let conv =
            r#"{"Conv2d":{"weight":"w","bias":null,"stride":1,"pad":2,"groups":1,"act":"Relu"}}"#;
        let op: Op = serde_json::from_str(conv).unwrap();
        assert_eq!(op.layer().unwrap().pad, Pads::same(2));
    }
}

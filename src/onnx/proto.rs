//! The subset of ONNX's protobuf schema that synthcal reads and writes, as prost messages.
//!
//! Field numbers are those of `onnx/onnx.proto` in the ONNX repository (github.com/onnx/onnx,
//! read at commit 004aa57f, IR version 7; later versions only add fields). Written out by
//! hand so that building needs no `protoc`; fields synthcal never uses are skipped, and prost
//! skips them when decoding.

/// `ModelProto`: the file's top-level message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The IR version (field 1).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// The operator sets the graph's nodes bind to (field 8).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The tool that wrote the file (field 2).
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Its version (field 3).
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS domain of the model (field 4).
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// The model's version (field 5).
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free text (field 6).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation (field 7).
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Named metadata (field 14).
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `OperatorSetIdProto`: a (domain, version) pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Empty or absent for the default `ai.onnx` domain (field 1).
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// The opset version (field 2).
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// `StringStringEntryProto`: a key-value pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Field 1.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Field 2.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `GraphProto`: nodes in topological order, constants, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Field 2.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (field 5).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Field 10.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Field 11 (may also list initializers).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Field 12.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types of intermediate values (field 13).
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `NodeProto`: one operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Field 1.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Field 2.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Field 3.
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Field 4.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Field 7.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Field 5.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Field 6.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
}

/// `AttributeProto.AttributeType` values synthcal writes.
pub mod attr_type {
    /// FLOAT.
    pub const FLOAT: i32 = 1;
    /// UINT8.
    pub const UINT8: i32 = 2;
    /// INT8.
    pub const INT8: i32 = 3;
    /// INT.
    pub const INT: i32 = 2;
    /// STRING.
    pub const STRING: i32 = 3;
    /// TENSOR.
    pub const TENSOR: i32 = 4;
    /// INTS.
    pub const INTS: i32 = 7;
}

/// `AttributeProto`: a named attribute holding one of its value fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Field 1.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// `AttributeType` (field 20).
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
    /// Field 2.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// Field 3.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// Field 4.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// Field 5.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Field 7.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// Field 8.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
}

/// `TensorProto.DataType` values synthcal handles.
pub mod data_type {
    /// FLOAT.
    pub const FLOAT: i32 = 1;
    /// UINT8.
    pub const UINT8: i32 = 2;
    /// INT8.
    pub const INT8: i32 = 3;
    /// INT32.
    pub const INT32: i32 = 6;
    /// INT64.
    pub const INT64: i32 = 7;
}

/// `TensorProto`: a constant tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Field 1.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// `DataType` (field 2).
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// Field 4.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Field 5.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Field 7.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Field 8.
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Little-endian element bytes (field 9).
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// Field 10.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Location of data kept outside the file (field 13).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// `DataLocation`: 1 = EXTERNAL (field 14).
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
}

/// `ValueInfoProto`: a named, typed value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Field 1.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Field 2.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`, tensor types only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// `tensor_type` (field 1 of the `value` oneof).
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeTensor>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeTensor {
    /// A `DataType` (field 1).
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// Field 2.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a size or a symbolic name (a oneof on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// Field 1.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// Field 2.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

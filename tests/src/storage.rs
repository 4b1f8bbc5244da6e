//! The storage variant of the inventory's interface, for the tests of
//! adapters that write models out: a boolean and a 64-bit number (columns
//! of their own kinds in every engine), and a description whose serializer
//! fails (a failing write must leave old data intact). The inventory's own
//! [`Interface`](crate::Interface) stays the shape of the Python
//! reference's worked example, whose output the tests compare byte for
//! byte.

use diffsync::DiffModel;
use serde::{Deserialize, Serialize, Serializer};

/// A description whose serialization fails on the text "boom" (to test that
/// a failing write leaves old data intact).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Text(pub String);

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == "boom" {
            return Err(serde::ser::Error::custom("refusing to write boom"));
        }
        s.serialize_str(&self.0)
    }
}

/// An interface as storage tests keep it.
#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "interface")]
pub struct Interface {
    /// Owning device.
    #[diffsync(id)]
    pub device: String,
    /// Interface name.
    #[diffsync(id)]
    pub name: String,
    /// Description; "boom" cannot be written.
    pub description: Text,
    /// MTU.
    pub mtu: i64,
    /// Administratively up.
    pub enabled: bool,
}

impl diffsync::IdPart for Text {
    fn write_text(&self, out: &mut String) {
        out.push_str(&self.0)
    }
}

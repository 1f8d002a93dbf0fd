//! Kafka's zigzag varint/varlong (ByteUtils.java, spec §1.4): protobuf base-128, LSB group first,
//! 0x80 continuation; 32-bit values take at most 5 bytes, 64-bit at most 10.
//!
//! CODEC HELPER OWNS THIS FILE.

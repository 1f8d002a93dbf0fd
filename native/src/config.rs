//! Partition configuration as the engine uses it. Validation happens once, in Python
//! (`pylog/config.py`); this struct receives the normalized values under Kafka's names.
//!
//! STORAGE HELPER OWNS THIS FILE.

//! JSON text as msgspec writes it: strings, floats, times (`format_time`).

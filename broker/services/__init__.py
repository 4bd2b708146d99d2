"""Domain writes, one module per concern. Each public function owns its transaction
(or states that it must run inside the caller's, under which lock)."""

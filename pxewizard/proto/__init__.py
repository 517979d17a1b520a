"""Sans-I/O protocol cores: bytes and `now` in; datagrams, timers and events out."""


module dra-harness.local/pause

go 1.26

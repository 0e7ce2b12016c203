module github.com/cofferhq/coffer/services/coffer

go 1.26.0

require github.com/cofferhq/coffer/pkg v0.0.0

replace github.com/cofferhq/coffer/pkg => ../../pkg

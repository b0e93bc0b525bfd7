// Package deploy holds no code: compose.yml runs defender's whole stack in
// containers (built by the repository's Dockerfile), and this package's
// test checks the file with docker-compose, since no Docker engine runs in
// CI. The probe command is the images' health check.
package deploy

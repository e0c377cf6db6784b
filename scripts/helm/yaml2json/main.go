// Command yaml2json reads a multi-document YAML stream (the output of `helm template`) on stdin and
// writes one JSON array to stdout: {"source": <template path from helm's "# Source:" line>, "object":
// <the document>} per non-empty document. It parses with sigs.k8s.io/yaml, as kubectl and the API
// server do (so `on`, `y`, `no` are booleans, as they would be in a cluster). check.py reads the result
// with the Python standard library alone.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

type document struct {
	Source string          `json:"source"`
	Object json.RawMessage `json:"object"`
}

var separator = regexp.MustCompile(`^---(\s.*)?$`)

func main() {
	docs, err := convert(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yaml2json:", err)
		os.Exit(1)
	}
	out, err := json.Marshal(docs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yaml2json:", err)
		os.Exit(1)
	}
	os.Stdout.Write(append(out, '\n'))
}

func convert(r io.Reader) ([]document, error) {
	docs := []document{}
	var chunk strings.Builder
	source := ""
	flush := func() error {
		text := chunk.String()
		chunk.Reset()
		j, err := yaml.YAMLToJSON([]byte(text))
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		if s := strings.TrimSpace(string(j)); s != "null" && s != "" {
			docs = append(docs, document{Source: source, Object: j})
		}
		source = ""
		return nil
	}
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		if separator.MatchString(line) {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if after, ok := strings.CutPrefix(line, "# Source: "); ok && source == "" {
			source = after
		}
		chunk.WriteString(line)
		chunk.WriteByte('\n')
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

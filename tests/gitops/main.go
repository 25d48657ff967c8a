// Command gitops-verdicts tells how the two common GitOps readers judge TaskRuns: kstatus (the
// library behind Flux, kpt and `kubectl wait`-style tools) and our Argo CD health check, run
// the way Argo CD runs a check from argocd-cm.
//
// Usage: gitops-verdicts HEALTH_LUA < objects.json
//
// Standard input is a Kubernetes List as `kubectl get -o json` prints it. Each item gives one
// JSON line: {"name", "kstatus", "kstatusMessage", "health", "healthMessage"}. A script that
// fails or answers with anything but a health table is an error, never a verdict.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// verdict is one output line.
type verdict struct {
	Name           string `json:"name"`
	KStatus        string `json:"kstatus"`
	KStatusMessage string `json:"kstatusMessage"`
	Health         string `json:"health"`
	HealthMessage  string `json:"healthMessage"`
}

// scriptTimeout is the time Argo CD gives a health script.
const scriptTimeout = time.Second

// healthStatuses are the codes Argo CD accepts from a health script.
var healthStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gitops-verdicts HEALTH_LUA < objects.json")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-verdicts:", err)
		os.Exit(1)
	}
}

func run(scriptPath string, in io.Reader, out io.Writer) error {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return fmt.Errorf("failed to read the health script: %w", err)
	}
	var list struct {
		Items *[]json.RawMessage `json:"items"`
	}
	if err := json.NewDecoder(in).Decode(&list); err != nil {
		return fmt.Errorf("failed to decode the list on standard input: %w", err)
	}
	if list.Items == nil {
		return errors.New("standard input is not a List: it has no items")
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for i, raw := range *list.Items {
		// The unstructured decoder keeps whole numbers as int64, as the API machinery does:
		// kstatus reads generations only in that type.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("failed to decode item %d: %w", i, err)
		}
		v, err := judge(obj, string(script))
		if err != nil {
			return fmt.Errorf("item %d (%s): %w", i, obj.GetName(), err)
		}
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("failed to write the verdict on %s: %w", obj.GetName(), err)
		}
	}
	return nil
}

func judge(obj *unstructured.Unstructured, script string) (verdict, error) {
	ks, err := status.Compute(obj)
	if err != nil {
		return verdict{}, fmt.Errorf("kstatus failed: %w", err)
	}
	health, message, err := runHealth(obj.Object, script)
	if err != nil {
		return verdict{}, err
	}
	return verdict{
		Name:           obj.GetName(),
		KStatus:        ks.Status.String(),
		KStatusMessage: ks.Message,
		Health:         health,
		HealthMessage:  message,
	}, nil
}

// runHealth runs a health script the way Argo CD runs one from argocd-cm: a fresh state with
// only the package, base and table libraries (Argo CD adds a cut-down os library, which a
// check has no use for), the object as the global `obj`, and a time limit.
func runHealth(obj map[string]interface{}, script string) (string, string, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", fmt.Errorf("failed to open Lua library %s: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	L.SetContext(ctx)

	value, err := toLua(L, obj)
	if err != nil {
		return "", "", err
	}
	L.SetGlobal("obj", value)
	if err := L.DoString(script); err != nil {
		return "", "", fmt.Errorf("health script failed: %w", err)
	}
	result, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("health script returned %s, not a table", L.Get(-1).Type())
	}
	health, ok := result.RawGetString("status").(lua.LString)
	if !ok || !healthStatuses[string(health)] {
		return "", "", fmt.Errorf("health script returned status %s, not an Argo CD health status", result.RawGetString("status"))
	}
	var message string
	switch m := result.RawGetString("message").(type) {
	case lua.LString:
		message = string(m)
	case *lua.LNilType:
	default:
		return "", "", fmt.Errorf("health script returned a message of type %s, not a string", m.Type())
	}
	return string(health), message, nil
}

// toLua turns a decoded JSON value into the Lua value a health script sees: objects become
// tables keyed by name, arrays tables indexed from 1, null nil.
func toLua(L *lua.LState, value interface{}) (lua.LValue, error) {
	switch v := value.(type) {
	case nil:
		return lua.LNil, nil
	case bool:
		return lua.LBool(v), nil
	case string:
		return lua.LString(v), nil
	case int64:
		return lua.LNumber(v), nil
	case float64:
		return lua.LNumber(v), nil
	case []interface{}:
		t := L.CreateTable(len(v), 0)
		for i, item := range v {
			lv, err := toLua(L, item)
			if err != nil {
				return nil, err
			}
			t.RawSetInt(i+1, lv)
		}
		return t, nil
	case map[string]interface{}:
		t := L.CreateTable(0, len(v))
		for key, item := range v {
			lv, err := toLua(L, item)
			if err != nil {
				return nil, err
			}
			t.RawSetString(key, lv)
		}
		return t, nil
	default:
		return nil, fmt.Errorf("no Lua value for JSON value of type %T", value)
	}
}

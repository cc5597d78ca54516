package stack

import "fmt"

// OpenAIComponent is the Dapr component file of a conversation.openai component named
// name, calling the OpenAI-compatible server at baseURL (its /v1 API, as
// "http://127.0.0.1:8080") with key and model. Callers append further metadata items
// ("  - name: responseCacheTTL\n    value: 5m\n").
func OpenAIComponent(name, baseURL, key, model string) string {
	return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: conversation.openai
  version: v1
  metadata:
  - name: key
    value: %s
  - name: model
    value: %s
  - name: endpoint
    value: %s/v1
`, name, key, model, baseURL)
}

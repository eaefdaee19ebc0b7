/**
 * Grafana provisioning: the data sources, with fixed uids so dashboards (issue #7)
 * can refer to them on every target.
 */
export const DATASOURCE_UIDS = { prometheus: 'cdn-prometheus', loki: 'cdn-loki' } as const;

export function renderGrafanaDatasources(o: { prometheusUrl: string; lokiUrl: string }): string {
  return `# Rendered by the CDN's renderer: do not edit, change the stack instead.
apiVersion: 1
datasources:
  - name: Prometheus
    uid: ${DATASOURCE_UIDS.prometheus}
    type: prometheus
    access: proxy
    url: ${JSON.stringify(o.prometheusUrl)}
    isDefault: true
    editable: false
  - name: Loki
    uid: ${DATASOURCE_UIDS.loki}
    type: loki
    access: proxy
    url: ${JSON.stringify(o.lokiUrl)}
    editable: false
`;
}

"""Texts shown to store staff, in Brazilian Portuguese or English.

Message ids are the English texts (gettext style) so the code stays readable; the Portuguese catalog maps
them. A missing translation falls back to English and is remembered in ``missing`` so a test can catch it.
"""

from __future__ import annotations

from collections.abc import Mapping

PT_BR = "pt_BR"
EN = "en"

_PT: dict[str, str] = {
    # connection
    "connecting…": "conectando…",
    "connected": "conectado",
    "connected (no live stream, polling)": "conectado (sem tempo real, consultando)",
    "disconnected": "desconectado",
    "disconnected: {reason} · attempt {attempt}": "desconectado: {reason} · tentativa {attempt}",
    "the daemon is not running": "o serviço não está rodando",
    "Not connected to the daemon": "Sem conexão com o serviço",
    # tabs and screens
    "Channels": "Canais",
    "Log": "Log",
    "Problems": "Problemas",
    "Problems ({count})": "Problemas ({count})",
    "Help": "Ajuda",
    # channel table
    "Channel / flow": "Canal / fluxo",
    "State": "Estado",
    "Next run": "Próxima",
    "Done/failed": "Feitos/falhas",
    "Pending": "Pendentes",
    "Failed": "Falhas",
    "Last run": "Última execução",
    "Last success": "Último sucesso",
    "Last error": "Último erro",
    "No channels configured.": "Nenhum canal configurado.",
    "Items synced per minute, last hour": "Itens sincronizados por minuto, última hora",
    "{count}/h": "{count}/h",
    "failing since {when}": "falhando desde {when}",
    "circuit open until {when}": "circuito aberto até {when}",
    "rate budget {remaining}/{limit} per min": "cota {remaining}/{limit} por min",
    "settings reload failed: {error}": "falha ao recarregar configurações: {error}",
    "{count} log lines dropped (queue full)": "{count} linhas de log descartadas (fila cheia)",
    # states
    "idle": "ocioso",
    "running": "rodando",
    "backing off": "aguardando",
    "paused": "pausado",
    "disabled": "desativado",
    "circuit open": "circuito aberto",
    "needs re-auth": "reautenticar",
    # relative time
    "in {duration}": "em {duration}",
    "{duration} ago": "há {duration}",
    "now": "agora",
    # key bindings (footer)
    "Sync": "Sincronizar",
    "Sync all": "Sincr. tudo",
    "Pause/resume": "Pausar/retomar",
    "Push stock": "Enviar estoque",
    "Reload settings": "Recarregar config.",
    "Quit": "Sair",
    "palette": "comandos",
    "Filters": "Filtros",
    "Search": "Buscar",
    "Clear filters": "Limpar filtros",
    "Older": "Anteriores",
    "Newest": "Recentes",
    "Details": "Detalhes",
    "Retry": "Reenviar",
    "Retry all": "Reenviar todos",
    "Dismiss": "Descartar",
    "Refresh": "Atualizar",
    "Close": "Fechar",
    "Reconnect": "Reconectar",
    "Up": "Acima",
    "Down": "Abaixo",
    "Page up": "Página acima",
    "Page down": "Página abaixo",
    "Top": "Topo",
    # Textual's own app bindings (hidden from the footer, shown in the keys panel)
    "Focus Next": "Próximo campo",
    "Focus Previous": "Campo anterior",
    "Copy selected text": "Copiar texto selecionado",
    # actions, outcomes
    "Sync now: everything": "Sincronizar agora: tudo",
    "Sync now: {target}": "Sincronizar agora: {target}",
    "Pause {target}": "Pausar {target}",
    "Resume {target}": "Retomar {target}",
    "Push stock of one product (by SKU)…": "Enviar estoque de um produto (por SKU)…",
    "Push stock of {sku}": "Enviar estoque de {sku}",
    "Retry outbox item {id}": "Reenviar item {id} da fila",
    "Retry all failed outbox items": "Reenviar todos os itens com falha",
    "Dismiss import failure {id}": "Descartar falha de importação {id}",
    "Show channels": "Mostrar canais",
    "Show log": "Mostrar log",
    "Show problems": "Mostrar problemas",
    "Show help": "Mostrar ajuda",
    "Edit log filters…": "Editar filtros do log…",
    "Reconnect to the daemon now": "Reconectar ao serviço agora",
    "Select a channel or flow first.": "Selecione um canal ou fluxo primeiro.",
    "Select a row first.": "Selecione uma linha primeiro.",
    "Only import failures can be dismissed.": "Só falhas de importação podem ser descartadas.",
    "{action} failed: {error}": "{action} falhou: {error}",
    "done": "feito",
    # push stock dialog
    "Push one product's stock now": "Enviar agora o estoque de um produto",
    "SKU": "SKU",
    "Push": "Enviar",
    "Cancel": "Cancelar",
    "Type a SKU.": "Digite um SKU.",
    "Link {sku} on {channel} to the product id": "Vincular {sku} em {channel} ao id do produto",
    "the channel's product id": "id do produto no canal",
    "Link": "Vincular",
    "Type the channel's product id.": "Digite o id do produto no canal.",
    "Link by hand": "Vincular à mão",
    "Link {sku} on {channel}": "Vincular {sku} em {channel}",
    "Only never-integrated products can be linked by hand.": (
        "Só produtos nunca integrados podem ser vinculados à mão."
    ),
    # log view
    "Time": "Hora",
    "Level": "Nível",
    "Channel": "Canal",
    "Flow": "Fluxo",
    "Event": "Evento",
    "Entity": "Entidade",
    "Data": "Dados",
    "all": "todos",
    "no filters": "sem filtros",
    "live": "ao vivo",
    "history": "histórico",
    "{count} rows shown": "{count} linhas exibidas",
    "{count} new, press Home": "{count} novas, tecle Home",
    "end of history": "fim do histórico",
    "loading…": "carregando…",
    "Could not load the log: {error}": "Não foi possível carregar o log: {error}",
    # filter dialog
    "Log filters": "Filtros do log",
    "Text": "Texto",
    "Since": "Desde",
    "Until": "Até",
    "Apply": "Aplicar",
    "Clear": "Limpar",
    "any": "qualquer",
    "e.g. 25/01/2026 14:00, 2026-01-25 or 2h": "ex.: 25/01/2026 14:00, 2026-01-25 ou 2h",
    "{field}: cannot read {value!r} as a date, time or duration": (
        "{field}: não entendi {value!r} como data, hora ou duração"
    ),
    "Since must be before until.": "'Desde' deve ser antes de 'até'.",
    # detail dialog
    "Log entry {id}": "Registro {id} do log",
    "Run": "Execução",
    "Entity id": "Id da entidade",
    "Remote id": "Id remoto",
    # problems view
    "Kind": "Tipo",
    "Item": "Item",
    "Attempts": "Tentativas",
    "Error": "Erro",
    "outbox": "fila",
    "import": "importação",
    "never integrated": "nunca integrado",
    "parcel": "encomenda",
    "order {number} · {code}": "pedido {number} · {code}",
    " · Parcels: {parcels}": " · Encomendas: {parcels}",
    "returned": "devolvida",
    "returning": "em devolução",
    "exception": "ocorrência",
    "not_found": "não encontrada",
    "invalid_code": "código inválido",
    "A parcel is asked about again on its carrier's next tracking run.": (
        "A encomenda é consultada de novo na próxima execução de rastreio da transportadora."
    ),
    "failed": "falhou",
    "parked": "estacionado",
    "pending": "pendente",
    "sent": "enviado",
    "Outbox: {failed} failed, {parked} parked · Import: {imports} · Never integrated: {never}": (
        "Fila: {failed} com falha, {parked} estacionados · Importação: {imports} · Nunca integrados: {never}"
    ),
    "open": "aberta",
    "dismissed": "descartada",
    "resolved": "resolvida",
    "Channel/flow": "Canal/fluxo",
    "No problems.": "Nenhum problema.",
    "Could not load problems: {error}": "Não foi possível carregar os problemas: {error}",
    "Retry all failed and parked outbox items?": "Reenviar todos os itens com falha e estacionados?",
    "Yes": "Sim",
    "No": "Não",
    # help
    "Keys": "Teclas",
    "Anywhere": "Em qualquer tela",
    "Channels tab": "Aba Canais",
    "Log tab": "Aba Log",
    "Problems tab": "Aba Problemas",
    "Colours": "Cores",
    "Go to a tab": "Ir para uma aba",
    "Command palette (every action)": "Paleta de comandos (todas as ações)",
    "This help": "Esta ajuda",
    "Move, select with the mouse or the arrows; Enter opens details": (
        "Mova e selecione com o mouse ou as setas; Enter abre os detalhes"
    ),
    "green: working · yellow: paused, backing off, pending · red: failing, needs attention": (
        "verde: funcionando · amarelo: pausado, aguardando, pendente · vermelho: falhando, precisa de atenção"
    ),
    "Sync the selected channel or flow now": "Sincronizar agora o canal ou fluxo selecionado",
    "Sync every channel now": "Sincronizar todos os canais agora",
    "Pause or resume the selected channel or flow": "Pausar ou retomar o canal ou fluxo selecionado",
    "Push one product's stock now, by SKU": "Enviar agora o estoque de um produto, pelo SKU",
    "Reload the settings file": "Recarregar o arquivo de configurações",
    "Filter by channel, flow, level, entity, text, dates": (
        "Filtrar por canal, fluxo, nível, entidade, texto, datas"
    ),
    "Load older rows (also when scrolling to the end)": (
        "Carregar linhas mais antigas (também ao rolar até o fim)"
    ),
    "Back to the newest rows, live": "Voltar às linhas mais recentes, ao vivo",
    "Retry the selected outbox item": "Reenviar o item selecionado da fila",
    "Retry every failed or parked item": "Reenviar todos os itens com falha ou estacionados",
    "Dismiss the selected import failure": "Descartar a falha de importação selecionada",
    "Link the selected never-integrated product by hand": (
        "Vincular à mão o produto nunca integrado selecionado"
    ),
}

CATALOGS: Mapping[str, Mapping[str, str]] = {PT_BR: _PT, EN: {}}


def detect_locale(environ: Mapping[str, str], default: str = EN) -> str:
    """POSIX precedence (LC_ALL > LC_MESSAGES > LANG); Portuguese of any country reads the pt_BR texts.

    ``C``/``POSIX`` (what an SSH session to a server usually carries) names no language at all, so it
    gives ``default`` - the daemon's configured locale - rather than forcing English on store staff.
    """
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            if value.split(".")[0].upper() in ("C", "POSIX"):
                return default
            return PT_BR if value.lower().startswith("pt") else EN
    return default


class Translator:
    """Looks a message up in one language and fills its ``{placeholders}``."""

    def __init__(self, locale: str) -> None:
        self.locale = PT_BR if locale.lower().startswith("pt") else EN
        self._catalog = CATALOGS[self.locale]
        self.missing: set[str] = set()

    def __call__(self, message: str, /, **values: object) -> str:
        text = self._catalog.get(message)
        if text is None:
            if self.locale != EN:
                self.missing.add(message)
            text = message
        return text.format(**values) if values else text

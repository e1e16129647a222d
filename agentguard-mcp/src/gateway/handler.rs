//! The gateway as an MCP server: every request of the client's, passed to the upstream servers unchanged, except
//! `tools/call`, which goes through the guard (`Gateway::gated_call`).

use super::*;

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let ups = &self.shared.upstreams;
        let mut info = InitializeResult::new(merged_capabilities(ups));
        match self.single() {
            Some(up) => {
                info.protocol_version = up.info.protocol_version.clone();
                if let Some(server_info) = &up.info.server_info {
                    info.server_info = server_info.clone();
                }
                info.instructions = up.info.instructions.clone();
            }
            None => {
                info.server_info = Implementation::new("agentguard-mcp", env!("CARGO_PKG_VERSION"));
                let parts: Vec<String> = ups
                    .iter()
                    .filter_map(|u| {
                        u.info
                            .instructions
                            .as_ref()
                            .map(|i| format!("Server `{}` (tools `{}{SEPARATOR}…`): {i}", u.name, u.name))
                    })
                    .collect();
                if !parts.is_empty() {
                    info.instructions = Some(parts.join("\n\n"));
                }
            }
        }
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        // Never more than the oldest upstream speaks: the gateway relays, it does not add protocol features.
        let oldest = self
            .shared
            .upstreams
            .iter()
            .map(|u| u.info.protocol_version.clone())
            .min_by(|a, b| a.as_str().cmp(b.as_str()));
        match oldest {
            Some(v) if !ProtocolVersion::known_up_to(&v).is_empty() => Cow::Borrowed(ProtocolVersion::known_up_to(&v)),
            _ => Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS),
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.shared.sessions.add(context.peer);
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        if let Some(up) = self.single() {
            let result = up
                .peer
                .list_tools(request)
                .await
                .map_err(|e| upstream_error(&up.name, e))?;
            up.add_tools(&result.tools);
            return Ok(result);
        }
        let mut all: Vec<Tool> = Vec::new();
        for up in self.live().filter(|u| u.info.capabilities.tools.is_some()) {
            let tools = up
                .peer
                .list_all_tools()
                .await
                .map_err(|e| upstream_error(&up.name, e))?;
            up.set_tools(&tools);
            for mut tool in tools {
                tool.name = prefixed(&up.name, &tool.name).into();
                all.push(tool);
            }
        }
        if let Some(dup) = first_duplicate(all.iter().map(|t| t.name.as_ref())) {
            return Err(McpError::internal_error(
                GatewayError::Collision { tool: dup.to_owned() }.to_string(),
                None,
            ));
        }
        Ok(ListToolsResult::with_all_items(all))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.gated_call(request, context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        if let Some(up) = self.single() {
            return up
                .peer
                .list_resources(request)
                .await
                .map_err(|e| upstream_error(&up.name, e));
        }
        let mut all = Vec::new();
        for up in self.live().filter(|u| u.info.capabilities.resources.is_some()) {
            all.extend(
                up.peer
                    .list_all_resources()
                    .await
                    .map_err(|e| upstream_error(&up.name, e))?,
            );
        }
        Ok(ListResourcesResult::with_all_items(all))
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        if let Some(up) = self.single() {
            return up
                .peer
                .list_resource_templates(request)
                .await
                .map_err(|e| upstream_error(&up.name, e));
        }
        let mut all = Vec::new();
        for up in self.live().filter(|u| u.info.capabilities.resources.is_some()) {
            all.extend(
                up.peer
                    .list_all_resource_templates()
                    .await
                    .map_err(|e| upstream_error(&up.name, e))?,
            );
        }
        Ok(ListResourceTemplatesResult::with_all_items(all))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if let Some(up) = self.single() {
            return up
                .peer
                .read_resource_once(request)
                .await
                .map_err(|e| upstream_error(&up.name, e));
        }
        // Resource URIs are not prefixed: the first server that can read it answers.
        let mut last = McpError::invalid_params(format!("no server has the resource `{}`", request.uri), None);
        for up in self.live().filter(|u| u.info.capabilities.resources.is_some()) {
            match up.peer.read_resource_once(request.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) => last = upstream_error(&up.name, e),
            }
        }
        Err(last)
    }

    #[allow(deprecated)] // resources/subscribe: legacy-only in rmcp, and what servers on earlier versions speak.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let mut last = McpError::invalid_params("no server can subscribe to this resource", None);
        for up in self.live().filter(|u| u.info.capabilities.resources.is_some()) {
            match up.peer.subscribe(request.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => last = upstream_error(&up.name, e),
            }
        }
        Err(last)
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let mut last = McpError::invalid_params("no server has this subscription", None);
        for up in self.live().filter(|u| u.info.capabilities.resources.is_some()) {
            match up.peer.unsubscribe(request.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => last = upstream_error(&up.name, e),
            }
        }
        Err(last)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        if let Some(up) = self.single() {
            return up
                .peer
                .list_prompts(request)
                .await
                .map_err(|e| upstream_error(&up.name, e));
        }
        let mut all = Vec::new();
        for up in self.live().filter(|u| u.info.capabilities.prompts.is_some()) {
            for mut prompt in up
                .peer
                .list_all_prompts()
                .await
                .map_err(|e| upstream_error(&up.name, e))?
            {
                prompt.name = prefixed(&up.name, &prompt.name);
                all.push(prompt);
            }
        }
        Ok(ListPromptsResult::with_all_items(all))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let name = request.name.clone();
        let (up, bare) = self
            .route(&name)
            .ok_or_else(|| McpError::invalid_params(format!("unknown prompt `{name}`"), None))?;
        request.name = bare.to_owned();
        up.peer
            .get_prompt_once(request)
            .await
            .map_err(|e| upstream_error(&up.name, e))
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        if let Some(up) = self.single() {
            return up.peer.complete(request).await.map_err(|e| upstream_error(&up.name, e));
        }
        if let Reference::Prompt(prompt) = &mut request.r#ref {
            let name = prompt.name.clone();
            let (up, bare) = self
                .route(&name)
                .ok_or_else(|| McpError::invalid_params(format!("unknown prompt `{name}`"), None))?;
            prompt.name = bare.to_owned();
            return up.peer.complete(request).await.map_err(|e| upstream_error(&up.name, e));
        }
        let mut last = McpError::invalid_params("no server completes this reference", None);
        for up in self.live().filter(|u| u.info.capabilities.completions.is_some()) {
            match up.peer.complete(request.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) => last = upstream_error(&up.name, e),
            }
        }
        Err(last)
    }

    #[allow(deprecated)] // Logging: deprecated by SEP-2577, still what servers on earlier versions speak.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let mut any = false;
        for up in self.live().filter(|u| u.info.capabilities.logging.is_some()) {
            up.peer
                .set_level(request.clone())
                .await
                .map_err(|e| upstream_error(&up.name, e))?;
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(McpError::invalid_request("no server supports logging", None))
        }
    }
}
